"""What the benchmark scripts share: a timestamped log line, and writing (or reusing) the synthetic data they time.

:func:`ensure_synth` reuses a directory when ``is_complete`` says it holds a finished ``pbc synth`` of the same
settings; otherwise it removes it (only when it looks like a ``pbc synth`` directory) and runs ``pbc synth`` again
in a child process, then checks it is complete.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def log(msg: str) -> None:
    """Print ``msg`` with the time of day, flushed (a long benchmark's progress)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def ensure_synth(data: Path, synth_args: Sequence[str], is_complete: Callable[[Path], tuple[bool, str]],
                 markers: Sequence[str], what: str) -> dict[str, Any]:
    """Reuse ``data`` if complete, else (re)write it with ``pbc synth <synth_args> --out data --quiet``.

    Parameters
    ----------
    data : Path
        The directory.
    synth_args : sequence of str
        The arguments of ``pbc synth`` (without ``--out`` and ``--quiet``).
    is_complete : callable
        ``data`` -> (whether it holds a finished run of these settings, why not).
    markers : sequence of str
        Paths under ``data`` of which one is there in a ``pbc synth`` directory: a non-empty ``data`` with none
        of them is refused, never removed.
    what : str
        What is written, for the log ("the extracts", "the nation").

    Returns
    -------
    dict
        ``reused`` (bool) and ``synth_s`` (seconds of ``pbc synth``, None when reused).
    """
    ok, why = is_complete(data)
    if ok:
        log(f"reusing {data} (complete: pbc synth {' '.join(synth_args)})")
        return {"reused": True, "synth_s": None}
    if data.exists() and any(data.iterdir()):
        if not any((data / m).exists() for m in markers):
            raise SystemExit(f"{data} exists and is not a pbc synth directory; give another --dir")
        log(f"{data} is incomplete or different ({why}): removing it and writing it again")
        shutil.rmtree(data)
    cmd = [sys.executable, "-m", "pbc_analysis.pipeline.cli", "synth", *synth_args, "--out", str(data), "--quiet"]
    log(f"writing {what}: pbc " + " ".join(cmd[3:]))
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, cwd=ROOT)
    synth_s = time.perf_counter() - t0
    ok, why = is_complete(data)
    if not ok:
        raise SystemExit(f"pbc synth finished but {data} is not complete: {why}")
    log(f"{what} written in {synth_s:.1f} s")
    return {"reused": False, "synth_s": round(synth_s, 2)}


def add_synth_options(ap: argparse.ArgumentParser, practices: int, practices_help: str, default_dir: str) -> None:
    """The options of the synthetic data a benchmark times: ``--practices``, ``--months``, ``--seed``, ``--dir``."""
    ap.add_argument("--practices", type=int, default=practices, help=practices_help)
    ap.add_argument("--months", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--dir", default=None, help=f"the data (default {default_dir}, -pN when --practices is not {practices})")


def data_dir(args: argparse.Namespace, practices: int, default_dir: str) -> Path:
    """``--dir``, else ``default_dir`` (with ``-p<N>`` when ``--practices`` is not the default ``practices``)."""
    return Path(args.dir or default_dir + ("" if args.practices == practices else f"-p{args.practices}")).resolve()
