"""Regenerate tests/expected/ from a run of configs/sample.yaml (`make expected`).

Run this only after a deliberate change to an analysis, and review `git diff tests/expected` before
committing: the back tests exist to catch changes nobody meant to make.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from pbc_analysis import paths
from pbc_analysis.run import load_config, run_pipeline

EXPECTED = paths.PROJECT_ROOT / "tests" / "expected"


def main() -> None:
    cfg = load_config(paths.CONFIGS_DIR / "sample.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = run_pipeline(cfg, reports_dir=Path(tmp), run_id="expected", render=False)
        if EXPECTED.exists():
            shutil.rmtree(EXPECTED)
        EXPECTED.mkdir(parents=True)
        for table in sorted((run_dir / "tables").glob("*.csv")):
            shutil.copy2(table, EXPECTED / table.name)
            print(f"wrote tests/expected/{table.name}")


if __name__ == "__main__":
    main()
