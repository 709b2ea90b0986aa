"""Regenerate tests/expected/ from a run of configs/sample.yaml (`make expected`).

Run this only after a deliberate change to an analysis, and review `git diff tests/expected` before
committing: the back tests exist to catch changes nobody meant to make. Each table is compared with the
one it replaces (:func:`pbc_analysis.pipeline.compare.compare_files`, the rule of the back tests and of
``pbc verify``), and the outcome printed: unchanged, equal within tolerance, different, new or removed.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pbc_analysis.core import paths
from pbc_analysis.pipeline import compare
from pbc_analysis.pipeline.run import load_config, run_pipeline

EXPECTED = paths.PROJECT_ROOT / "tests" / "expected"


def main() -> None:
    """Run the sample config and replace tests/expected/ with its tables, saying how each changed."""
    cfg = load_config(paths.CONFIGS_DIR / "sample.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_pipeline(cfg, reports_dir=Path(tmp), run_id="expected", render=False)
        new = {p.name: p for p in sorted((run_dir / "tables").glob("*.csv"))}
        old = {p.name: p for p in sorted(EXPECTED.glob("*.csv"))} if EXPECTED.exists() else {}
        lines = []
        for name in sorted(set(new) | set(old)):
            if name not in old:
                lines.append(f"tests/expected/{name}: new")
            elif name not in new:
                lines.append(f"tests/expected/{name}: removed (no longer produced)")
            else:
                result = compare.compare_files(old[name], new[name], f"tests/expected/{name}", labels=("old", "new"))
                lines.append(f"tests/expected/{name}: unchanged" if result.state == compare.IDENTICAL else str(result))
        if EXPECTED.exists():
            shutil.rmtree(EXPECTED)
        EXPECTED.mkdir(parents=True)
        for name, table in new.items():
            shutil.copy2(table, EXPECTED / name)
        print("\n".join(lines))
        print(f"wrote {len(new)} tables to tests/expected/; review `git diff tests/expected` before committing")


if __name__ == "__main__":
    main()
