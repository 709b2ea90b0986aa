"""``pbc verify``: re-run a published run from its manifest and compare what it published."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import Any

from . import paths
from .config import parse_config
from .manifest import git_info, input_files, output_hashes, sha256_file
from .run import run_pipeline


@dataclasses.dataclass
class VerifyReport:
    identical: bool
    lines: list[str]

    def __str__(self) -> str:
        return "\n".join(self.lines)


def _describe_difference(a: Path, b: Path) -> str:
    import numpy as np
    import pandas as pd

    if a.suffix != ".csv":
        return "content differs"
    x, y = pd.read_csv(a, dtype=str, keep_default_na=False), pd.read_csv(b, dtype=str, keep_default_na=False)
    if list(x.columns) != list(y.columns):
        return f"columns differ: {list(x.columns)} vs {list(y.columns)}"
    if len(x) != len(y):
        return f"{len(x)} rows published vs {len(y)} rows re-run"
    parts = []
    for col in x.columns:
        diff = x[col] != y[col]
        if not diff.any():
            continue
        xn, yn = pd.to_numeric(x[col], errors="coerce"), pd.to_numeric(y[col], errors="coerce")
        if xn.notna().all() and yn.notna().all():
            d = np.abs(xn - yn)
            rel = (d / np.maximum(np.abs(xn), 1e-300)).max()
            parts.append(f"{col}: {int(diff.sum())} rows, max abs diff {d.max():.3g}, max rel diff {rel:.3g}")
        else:
            parts.append(f"{col}: {int(diff.sum())} rows differ (e.g. row {int(diff.idxmax()) + 1}: {x[col][diff].iloc[0]!r} vs {y[col][diff].iloc[0]!r})")
    return "; ".join(parts) or "bytes differ (formatting)"


def verify(run_dir: str | Path, echo: Any = print) -> VerifyReport:
    """Re-run a published run from its manifest in a temporary directory and compare its tables."""
    run_dir = paths.resolve(run_dir, base=Path.cwd()) if Path(run_dir).exists() else paths.resolve(run_dir)
    manifest_path = run_dir / "manifest.json"
    if not manifest_path.exists():
        raise FileNotFoundError(f"{run_dir} has no manifest.json: is it a run directory made by `pbc run`?")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    lines: list[str] = []
    code_now = git_info()
    if manifest["code"].get("commit") != code_now.get("commit"):
        lines.append(f"note: the run was made at commit {manifest['code'].get('commit')}, this checkout is at {code_now.get('commit')}")
    if manifest["code"].get("dirty"):
        lines.append("note: the run was made from a checkout with uncommitted changes")
    cfg_path = paths.resolve(manifest["config"]["path"]) if manifest["config"].get("path") else None
    cfg = parse_config(manifest["config"]["text"], path=cfg_path)
    if cfg.parameters != manifest["parameters"]:
        lines.append("note: the config resolves to different parameters on this machine (paths differ?)")
    changed_inputs = []
    current = {rel: sha256_file(p) for rel, p in input_files(cfg).items()}
    for rel, digest in manifest["inputs"].items():
        if current.get(rel) != digest:
            changed_inputs.append(f"input {rel}: {'missing' if rel not in current else 'sha256 differs'}")
    with tempfile.TemporaryDirectory(prefix="pbc-verify-") as tmp:
        echo(f"re-running {manifest['run_id']} in {tmp}")
        new_dir = run_pipeline(cfg, reports_dir=Path(tmp), render=False, run_id="rerun", echo=echo)
        new = output_hashes(new_dir)
        old = manifest["outputs"]
        differing = []
        for name in sorted(set(old) | set(new)):
            if name not in new:
                differing.append(f"{name}: missing from the re-run")
            elif name not in old:
                differing.append(f"{name}: new in the re-run")
            elif old[name] != new[name]:
                published = run_dir / name
                detail = _describe_difference(published, new_dir / name) if published.exists() else "published file missing; hash differs"
                differing.append(f"{name}: differs ({detail})")
            else:
                lines.append(f"{name}: identical")
    for item in changed_inputs:
        lines.append(item)
    if differing:
        lines.extend(differing)
        lines.append(f"NOT IDENTICAL: {len(differing)} of {len(set(old) | set(new))} outputs differ")
    else:
        lines.append(f"identical: all {len(old)} outputs match the manifest")
    return VerifyReport(identical=not differing and not changed_inputs, lines=lines)
