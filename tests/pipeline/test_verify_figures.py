"""Figures are compared by their pixels (pbc_analysis.pipeline.compare.compare_figure and compare_report): PNG
metadata is the one part excluded, by rule; a forged figure with rewritten hashes is found by the re-run."""

from __future__ import annotations

import base64
import io
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

from pbc_analysis.pipeline import compare
from pbc_analysis.pipeline import manifest as mf
from pbc_analysis.pipeline import verify as vf


def _png(pixels: np.ndarray, **text: str) -> bytes:
    info = PngImagePlugin.PngInfo()
    for k, v in text.items():
        info.add_text(k, v)
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8), "RGBA").save(out, format="PNG", pnginfo=info)
    return out.getvalue()


@pytest.fixture()
def picture() -> np.ndarray:
    rng = np.random.default_rng(1)
    px = np.full((60, 80, 4), 255, dtype=np.uint8)
    px[:, :, :3] = rng.integers(0, 256, size=(60, 80, 3))
    return px


def test_metadata_is_excluded_and_nothing_else(picture):
    a = _png(picture, Software="matplotlib 3.10", CreationTime="2026-12-03 10:00")
    b = _png(picture, Software="matplotlib 3.11", CreationTime="2027-01-01 09:00")
    assert a != b
    same = compare.compare_figure(a, b, "figures/x.png")
    assert same.state == compare.IDENTICAL and "metadata differs" in same.details[0]
    # one pixel nudged by 8 levels in one channel (anti-aliasing): RMS 8 / sqrt(60 * 80 * 4) = 0.06, within 1
    nudged = picture.copy()
    nudged[10, 10, 0] ^= 8
    near = compare.compare_figure(a, _png(nudged), "figures/x.png")
    assert near.state == compare.WITHIN and near.ok
    assert near.details == ["0.02% of pixels differ, root-mean-square 0.0577 on 0-255 (allowed 1)"]
    # a bar redrawn: a tenth of the picture changed
    forged = picture.copy()
    forged[:6, :, :3] = 0
    far = compare.compare_figure(a, _png(forged), "figures/x.png")
    assert far.state == compare.DIFFERENT and far.details[0].startswith("10.00% of pixels differ")


def test_other_sizes_and_unreadable_images_are_different(picture):
    a = _png(picture)
    small = compare.compare_figure(a, _png(picture[:50]), "f.png")
    assert small.state == compare.DIFFERENT and small.details == ["80 x 60 pixels published vs 80 x 50 re-run"]
    junk = compare.compare_figure(a, b"<script>alert(1)</script>", "f.png")
    assert junk.state == compare.DIFFERENT and junk.details[0].startswith("not a readable PNG image: ")
    jpeg = io.BytesIO()
    Image.fromarray(picture[:, :, :3]).save(jpeg, format="JPEG")
    other = compare.compare_figure(a, jpeg.getvalue(), "f.png")
    assert other.state == compare.DIFFERENT and "a JPEG image, not PNG" in other.details[0]


def _page(png: bytes, svg: str) -> str:
    return ("<html><body><table><caption>T</caption><tr><th>A</th></tr><tr><td>1</td></tr></table>"
            f'<img alt="chart" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f'{svg}</body></html>')


def test_report_figures_are_compared_with_its_tables(tmp_path, picture):
    svg = '<svg viewBox="0 0 10 10"><rect x="1" width="5" height="3"/></svg>'

    def cmp(a: str, b: str) -> compare.Comparison:
        (tmp_path / "a.html").write_text(a)
        (tmp_path / "b.html").write_text(b)
        return compare.compare_report(tmp_path / "a.html", tmp_path / "b.html", "practices/P1.html")

    base = _page(_png(picture, Software="a"), svg)
    same = cmp(base, _page(_png(picture, Software="b"), svg))
    assert same.state == compare.IDENTICAL
    assert same.details == ["all 1 tables identical, caption, headers and cells, and its 1 images and 1 charts "
                            "identical (the text around them is checked against its hash only)"]
    forged = picture.copy()
    forged[:30] = 0
    img = cmp(base, _page(_png(forged), svg))
    assert img.state == compare.DIFFERENT and img.details[0].startswith("image 1: 50.00% of pixels differ")
    chart = cmp(base, _page(_png(picture), svg.replace('width="5"', 'width="4"')))
    assert chart.state == compare.DIFFERENT and chart.details == ["chart 1 (inline SVG) differs"]
    fewer = cmp(base, _page(_png(picture), ""))
    assert fewer.details == ["1 images and 1 charts published vs 1 and 0 re-run"]


def test_figures_are_compared_outputs():
    names = vf.compared_names(["figures/att_waterfall.png", "published/figures/att_waterfall.png",
                               "figures/sub/x.png", "notebooks/04_savings_attribution.ipynb"])
    assert names == ["figures/att_waterfall.png", "published/figures/att_waterfall.png"]


@pytest.mark.slow
def test_verify_finds_a_forged_figure_with_rewritten_hashes(sample_run, sample_rerun, tmp_path):
    """A figure redrawn and every hash rewritten: the files are self-consistent, and the re-run's pixels show it."""
    forged = tmp_path / "forged_run"
    shutil.copytree(sample_run, forged, symlinks=True)
    fig = forged / "figures" / "att_waterfall.png"
    with Image.open(fig) as im:
        px = np.asarray(im.convert("RGBA")).copy()
    px[: px.shape[0] // 3, :, :3] = 255   # the top third painted out
    fig.write_bytes(_png(px))
    manifest = json.loads((forged / "manifest.json").read_text())
    mf.write_manifest(forged, {**manifest, "outputs": mf.output_hashes(forged)})
    assert mf.check_published(forged) == []
    proc = subprocess.run([sys.executable, "-m", "pbc_analysis.pipeline.cli", "verify", str(forged), "--allow-dirty",
                           "--against", str(sample_rerun.rerun_dir)], capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, MPLBACKEND="Agg", JUPYTER_PREFER_ENV_PATH="1"), check=False)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "figures/att_waterfall.png: DIFFERENT (" in out and "of pixels differ" in out
    assert "published/figures/att_waterfall.png: byte-identical" in out
    assert "figures/bm_funnel_measures.png: byte-identical" in out
    assert out.strip().splitlines()[-1].startswith("NOT IDENTICAL: 1 of ")
