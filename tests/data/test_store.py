"""The run's store of validated tables (pbc_analysis.data.store): validated once by ``pbc run``, read by every
notebook; exact round trip, no second validation, tampering and changed sources refused."""

from __future__ import annotations

import json
import os
import shutil

import pandas as pd
import pytest

from pbc_analysis import data
from pbc_analysis.data import inputs as inputs_module
from pbc_analysis.data import store
from pbc_analysis.pipeline import manifest

WINDOW = dict(start_month="2003-04", end_month="2008-03")


@pytest.fixture()
def stored(tmp_path, project_root):
    """A copy of the sample (so its files can be touched) validated and kept in a run directory's store."""
    src = tmp_path / "data"
    shutil.copytree(project_root / "data" / "sample", src)
    inp = data.load_inputs(src, **WINDOW)
    run = tmp_path / "run"
    run.mkdir()
    entry = store.write_store(inp, run, src)
    return inp, src, run, entry


def test_round_trip_is_exact_and_skips_validation(stored, monkeypatch):
    inp, src, run, entry = stored
    assert entry["folder"].startswith(f"{store.STORE_DIR}/") and set(entry["tables"]) == set(inp.tables())

    def no_second_validation(*a, **k):
        raise AssertionError("read and validated the files again")

    monkeypatch.setattr(inputs_module, "_load_contexts", no_second_validation)
    back = data.load_inputs(src, **WINDOW, run_dir=run)
    for name, df in inp.tables().items():
        pd.testing.assert_frame_equal(df, getattr(back, name), check_exact=True)   # dtypes included
    assert back.files == inp.files and back.window == inp.window
    # categorical columns stay codes and categories (not a Python string per row)
    cats = [c for c, t in inp.activity.dtypes.items() if isinstance(t, pd.CategoricalDtype)]
    assert all(isinstance(back.activity[c].dtype, pd.CategoricalDtype) for c in cats)


def test_without_a_store_the_files_are_read_and_validated(stored, monkeypatch, tmp_path):
    """Another data directory (or another window: the folder is named by both) has no store: it is validated."""
    inp, src, run, _ = stored
    other = tmp_path / "other"
    shutil.copytree(src, other)
    calls = []
    real = inputs_module._load_contexts
    monkeypatch.setattr(inputs_module, "_load_contexts", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    assert data.load_inputs(other, **WINDOW, run_dir=run).window == inp.window
    assert data.load_inputs(src, **WINDOW, run_dir="").window == inp.window   # a notebook opened by hand
    assert calls == [other, src]
    assert store.store_folder(run, src, inp.window) != store.store_folder(run, src, data.Window("2004-04", "2008-03"))


def test_tampered_table_and_changed_source_are_both_named(stored):
    _, src, run, entry = stored
    folder = run / entry["folder"]
    table = pd.read_parquet(folder / "budgets.parquet")
    table.iloc[0, table.columns.get_loc("budget")] *= 2
    table.to_parquet(folder / "budgets.parquet", index=False)
    source = next(p for p in src.iterdir() if p.name.startswith("practices."))
    os.utime(source, ns=(source.stat().st_atime_ns, source.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError) as exc:
        data.load_inputs(src, **WINDOW, run_dir=run)
    msg = str(exc.value)
    assert "budgets.parquet is not the table validated" in msg and "changed after it was validated" in msg
    assert "rerun `pbc run`" in msg


@pytest.mark.parametrize("edit, says", [
    (lambda ix: ix.update(window=["2003-05", "2008-03"]), "is not the notebook's"),
    (lambda ix: ix["tables"].update({"../../etc/passwd": {"sha256": "0" * 64}}), "is not a known table"),
    (lambda ix: ix.update(format="<script>"), "not a store index of format 1"),
])
def test_a_hostile_index_is_refused_naming_the_file(stored, edit, says):
    _, src, run, entry = stored
    path = run / entry["folder"] / "index.json"
    ix = json.loads(path.read_text())
    edit(ix)
    path.write_text(json.dumps(ix))
    with pytest.raises(ValueError, match=says) as exc:
        data.load_inputs(src, **WINDOW, run_dir=run)
    assert str(path) in str(exc.value)


def test_the_store_is_not_an_output_but_is_in_the_manifest(sample_run):
    outputs = json.loads((sample_run / "manifest.json").read_text())["outputs"]
    assert not [p for p in outputs if p.startswith(f"{store.STORE_DIR}/")]
    assert not [p for p in manifest.output_hashes(sample_run) if p.startswith(f"{store.STORE_DIR}/")]
    kept = json.loads((sample_run / "manifest.json").read_text())["validated"]
    assert len(kept) == 1 and set(kept[0]["tables"]) >= {"activity", "population", "practices"}
    folder = sample_run / kept[0]["folder"]
    for name, entry in kept[0]["tables"].items():
        assert manifest.sha256_file(folder / f"{name}.parquet") == entry["sha256"]
    assert not (sample_run / "published" / store.STORE_DIR).exists()
