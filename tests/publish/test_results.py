"""Result tables and results.json are byte-stable (pbc_analysis.publish.results)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.publish import results


def test_write_table_sorts_and_formats(tmp_path):
    df = pd.DataFrame({"practice_code": ["B00002", "A00001"], "value": [1 / 3, 2.0], "n": [3, 4]})
    path = results.write_table(df, "t", tmp_path, sort_by=["practice_code"])
    assert path.read_bytes() == b"practice_code,value,n\nA00001,2,4\nB00002,0.3333333333,3\n"
    shuffled = df.sample(frac=1, random_state=1)
    results.write_table(shuffled, "u", tmp_path, sort_by=["practice_code"])
    assert (tmp_path / "tables" / "u.csv").read_bytes() == path.read_bytes()


def test_write_table_default_sort_uses_all_columns_and_missing_last(tmp_path):
    df = pd.DataFrame({"a": ["x", "x", "w"], "b": [2.0, np.nan, 1.0]})
    path = results.write_table(df, "t", tmp_path)
    assert path.read_text() == "a,b\nw,1\nx,2\nx,\n"


def test_table_names_are_checked(tmp_path):
    with pytest.raises(ValueError, match="letters, digits and underscores"):
        results.write_table(pd.DataFrame({"a": [1]}), "../escape", tmp_path)


def test_sections_merge_canonically(tmp_path):
    results.write_section(tmp_path, "b_section", {"z": np.int64(3), "a": np.float64(0.5), "nan": float("nan")})
    results.write_section(tmp_path, "a_section", {"flag": np.bool_(True), "list": (1, 2)})
    merged = results.merge_sections(tmp_path)
    text = (tmp_path / "results.json").read_text()
    assert list(merged) == ["a_section", "b_section"]
    assert json.loads(text) == {"a_section": {"flag": True, "list": [1, 2]}, "b_section": {"a": 0.5, "nan": None, "z": 3}}
    assert text.endswith("\n") and text.index('"a"') < text.index('"nan"') < text.index('"z"')
    assert results.read_results(tmp_path) == merged


def test_empty_run_dir_is_an_error_and_interactive_dir_is_used(monkeypatch, tmp_path):
    with pytest.raises(ValueError, match="run_dir is empty"):
        results.write_section("", "x", {})
    monkeypatch.setattr("pbc_analysis.core.paths.REPORTS_DIR", tmp_path)
    assert results.resolve_run_dir("") == tmp_path / "interactive"


def test_save_figure_is_byte_stable(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots()
    ax.plot([1, 2, 3], [2, 1, 3])
    a = results.save_figure(fig, "f1", tmp_path).read_bytes()
    b = results.save_figure(fig, "f2", tmp_path).read_bytes()
    plt.close(fig)
    assert a == b and a[:8] == b"\x89PNG\r\n\x1a\n"
