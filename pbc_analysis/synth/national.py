"""``pbc synth --national``: a synthetic nation of commissioners, each a synthetic PCT with its own known answer.

N practices are split into commissioners (PCT / sub-ICB sized, :data:`MIN_SIZE` to :data:`MAX_SIZE`
practices each; :func:`commissioner_sizes`). Commissioner k is a full synthetic PCT of the single-PCT
generator (:func:`pbc_analysis.synth.generator.generate`) with

- its own seed: child k + 1 of ``numpy.random.SeedSequence(seed)`` (child 0 draws the sizes and the
  variations below), so the same seed gives the same nation, byte for byte;
- its own codes: ``code_block = k`` (:class:`~pbc_analysis.synth.params.SynthParams`), 250 practice codes and
  32 provider codes of its own, after those of commissioner k - 1, so codes are unique nationally and the
  commissioners' tables, concatenated in block order, are sorted by their keys;
- its own engagement timing and planted effects, drawn within the ranges the single-PCT tests use
  (:func:`vary`): cohort offsets shifted by -3 to +3 months from the window's default, cohort shares
  0.20-0.35, 0.15-0.30, 0.10-0.20 (the rest never engaged), engagement effects x 0.6-1.4, 1 to
  round(P/30) + 1 under-referrers of log propensity -0.7 to -0.3, the provider's follow-up cut -10% to -30%
  starting -3 to +3 months from its default month.

National things are national: every commissioner shares the window and the tariff parameters, so the tariff,
the specialties and the reference rates are one table (:func:`write_national` checks that each commissioner's
equal the first's).

Output (:func:`write_national`, one commissioner in memory at a time): the tables of the data dictionary, each
the concatenation of the commissioners' (population, activity and referrals appended per commissioner to one
Parquet or CSV file; the small tables sorted by their keys), ``commissioners.csv`` (practice_code,
commissioner_code, commissioner_name: one row per practice) and ``national_truth.json``:
``{"commissioners": {code: {"name", "n_practices", "seed", "params", "truth"}}, "national": {...}}`` where
``params`` is the commissioner's :meth:`SynthParams.to_dict` (``generate(SynthParams.from_dict(params))``
gives its tables again) and ``truth`` its ``ground_truth.json`` exactly as
:func:`~pbc_analysis.synth.write.write_tables` writes it.

Commissioner codes are ``5`` + a letter + a character (``5A0``, ``5A1``, ...; never the single-PCT extracts'
``5ZZ`` / ``5ZY``), names ``<place> PCT``.

References
----------
NumPy ``SeedSequence.spawn`` (independent child streams); NHS Digital ODS (commissioner codes, 3 characters).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Callable, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from pbc_analysis.core.checks import ArgumentError
from pbc_analysis.synth.calibration import SYNTH_MODEL_VERSION
from pbc_analysis.synth.contract import LARGE_TABLES, TABLE_COLUMNS, TABLE_KEYS
from pbc_analysis.synth.events import write_events
from pbc_analysis.synth.events_reference import LOCAL_TABLES, Codes
from pbc_analysis.synth.generator import SynthResult, generate
from pbc_analysis.synth.options import flag_label, params_from_flags, parse_flag
from pbc_analysis.synth.params import (
    CODE_BLOCKS,
    SynthParams,
    default_cohort_offsets,
    default_n_under_referrers,
    default_provider_cut_offset,
    first_full_year_end,
)
from pbc_analysis.synth.world import numbered_places, place_names
from pbc_analysis.synth.write import FORMATS, _csv_bytes

__all__ = ["DRAWN_FIELDS", "MAX_SIZE", "MIN_SIZE", "NATIONAL_TABLES", "Commissioner", "commissioner_code", "commissioner_codes",
           "commissioner_sizes", "national_from_flags", "plan_national", "vary", "write_national"]

MIN_SIZE, MAX_SIZE = 30, 200               # practices of one commissioner (a PCT / sub-ICB)
SIZE_MEDIAN, SIZE_LOG_SD = 60.0, 0.45      # drawn sizes: about 105 commissioners for 6,500 practices
SHARED_TABLES = ("specialties", "tariff", "reference_rates")  # national: one table for every commissioner
NATIONAL_TABLES = ("commissioners",)       # the optional table of a national data directory
#: the fields each commissioner draws (not to be given with ``--national``)
DRAWN_FIELDS = ("seed", "n_practices", "code_block", "cohort_offsets", "cohort_fractions", "never_engaged_fraction",
                "cohort_effect_scale", "engagement_effects", "n_under_referrers", "under_referrer_log_propensity",
                "provider_cut_provider", "provider_cut_offset", "provider_cut_size")
_FIRST = "ABCDEFGHJKLMNPQRSTVWXY"            # the second character of a commissioner code
_SECOND = "0123456789ABCDEFGHJKLMNPQRSTVWXY"  # the third (sorted, so codes sort in block order)
MAX_COMMISSIONERS = min(CODE_BLOCKS, len(_FIRST) * len(_SECOND))
#: the ranges of the drawn variations (recorded in the truth)
RANGES: dict[str, Any] = {"cohort_shift_months": [-3, 3], "cohort_fractions": [[0.20, 0.35], [0.15, 0.30], [0.10, 0.20]],
                          "engagement_effect_multiplier": [0.6, 1.4], "under_referrers": "1 to round(P/30) + 1",
                          "under_referrer_log_propensity": [-0.7, -0.3], "provider_cut_size": [-0.30, -0.10],
                          "provider_cut_shift_months": [-3, 3]}


@dataclass(frozen=True)
class Commissioner:
    """One commissioner of the nation: its block, code, name and the parameters of its PCT."""

    index: int                     # its code block (position in code order)
    code: str                      # e.g. 5A0
    name: str                      # e.g. Ashford PCT
    params: SynthParams            # as given to generate (seed, n_practices, code_block and the drawn values)


def commissioner_code(index: int) -> str:
    """The code of the commissioner in block ``index``: ``5`` + a letter + a character (``5A0``, ``5A1``, ...).

    Parameters
    ----------
    index : int
        0 to :data:`MAX_COMMISSIONERS` - 1.

    Returns
    -------
    str
        Three characters; codes sort in index order.
    """
    return "5" + _FIRST[index // len(_SECOND)] + _SECOND[index % len(_SECOND)]


def commissioner_sizes(n_practices: int, rng: np.random.Generator) -> np.ndarray:
    """Practices of each commissioner: drawn sizes of :data:`MIN_SIZE` to :data:`MAX_SIZE` adding up to N.

    Sizes are drawn from a log-normal (median 60, log SD 0.45) clipped to the bounds until they cover N;
    their number is kept between ceil(N / 200) and floor(N / 30), the sizes scaled to N (largest remainder)
    and moved back inside the bounds one practice at a time.

    Parameters
    ----------
    n_practices : int
        N, at least :data:`MIN_SIZE`.
    rng : numpy.random.Generator

    Returns
    -------
    numpy.ndarray of int64
        One size per commissioner, in block order.

    Raises
    ------
    ArgumentError
        When N is below :data:`MIN_SIZE` or needs more than :data:`MAX_COMMISSIONERS` commissioners.

    References
    ----------
    Not in DOMAIN.md: 152 PCTs held about 8,300 practices (2006), 106 sub-ICBs about 6,300 (2024).
    """
    n = int(n_practices)
    if n < MIN_SIZE:
        msg = (f"--practices {n} is too few for --national: a commissioner holds {MIN_SIZE} to {MAX_SIZE} practices, "
               f"so give --practices {MIN_SIZE} or more")
        raise ArgumentError(msg, [msg])
    k_min, k_max = math.ceil(n / MAX_SIZE), n // MIN_SIZE
    if k_min > MAX_COMMISSIONERS:
        msg = (f"--practices {n} needs {k_min} or more commissioners, more than the {MAX_COMMISSIONERS} codes of "
               f"--national; give --practices {MAX_COMMISSIONERS * MAX_SIZE} or fewer")
        raise ArgumentError(msg, [msg])
    draws = np.clip(np.exp(np.log(SIZE_MEDIAN) + SIZE_LOG_SD * rng.standard_normal(k_max)), MIN_SIZE, MAX_SIZE)
    k = int(np.clip(np.searchsorted(np.cumsum(draws), n) + 1, k_min, min(k_max, MAX_COMMISSIONERS)))
    raw = n * draws[:k] / draws[:k].sum()
    sizes = np.floor(raw).astype(np.int64)
    sizes[np.argsort(-(raw - sizes), kind="stable")[: n - int(sizes.sum())]] += 1
    sizes = np.clip(sizes, MIN_SIZE, MAX_SIZE)
    while (diff := n - int(sizes.sum())) != 0:  # k x 30 <= n <= k x 200, so there is always room
        room = np.flatnonzero(sizes < MAX_SIZE) if diff > 0 else np.flatnonzero(sizes > MIN_SIZE)
        sizes[room[: abs(diff)]] += 1 if diff > 0 else -1
    return sizes


def vary(base: SynthParams, rng: np.random.Generator, n_practices: int, index: int, seed: int) -> SynthParams:
    """A commissioner's parameters: ``base`` with its size, seed, code block and drawn timing and effects.

    Parameters
    ----------
    base : SynthParams
        The national settings (window, tariff, every field not in :data:`DRAWN_FIELDS`).
    rng : numpy.random.Generator
        The national stream (consumed in block order).
    n_practices, index, seed : int
        The commissioner's size, code block and seed.

    Returns
    -------
    SynthParams
        Unresolved (derived fields such as the number of providers stay ``None``).

    References
    ----------
    The module docstring (the ranges); :data:`RANGES`.
    """
    M, start = base.n_months, base.start_month
    fr = tuple(round(float(rng.uniform(lo, hi)), 2) for lo, hi in RANGES["cohort_fractions"])
    default = np.array(default_cohort_offsets(M, start, len(fr)))
    lo, hi = first_full_year_end(start) + 1 - default[0], M - 1 - default[-1]  # after the base year, in the window
    shift = int(rng.integers(-3, 4))
    shift = int(np.clip(shift, lo, hi)) if lo <= hi else 0
    multiplier = float(rng.uniform(*RANGES["engagement_effect_multiplier"]))
    n_under = int(rng.integers(1, default_n_under_referrers(n_practices) + 2))
    under_log = round(float(rng.uniform(*RANGES["under_referrer_log_propensity"])), 3)
    cut_size = round(float(rng.uniform(*RANGES["provider_cut_size"])), 3)
    cut = int(np.clip(default_provider_cut_offset(M) + int(rng.integers(-3, 4)), 1, M - 1))
    return dataclasses.replace(
        base, seed=int(seed), n_practices=int(n_practices), code_block=int(index),
        cohort_offsets=tuple(int(o) for o in default + shift), cohort_fractions=fr,
        never_engaged_fraction=round(1.0 - sum(fr), 2), cohort_effect_scale=None,
        engagement_effects=tuple((c, round(e * multiplier, 4)) for c, e in base.engagement_effects),
        n_under_referrers=n_under, under_referrer_log_propensity=under_log, provider_cut_provider=None,
        provider_cut_offset=cut, provider_cut_size=cut_size)


def plan_national(base: SynthParams) -> list[Commissioner]:
    """The commissioners of a nation of ``base.n_practices`` practices drawn from ``base.seed``.

    Parameters
    ----------
    base : SynthParams
        The national settings: ``seed``, ``n_practices`` (N, at least 30), the window and every field not in
        :data:`DRAWN_FIELDS`.

    Returns
    -------
    list of Commissioner
        In block (code) order.

    Raises
    ------
    ArgumentError
        For too few or too many practices, or when a commissioner's parameters break a rule (naming it).

    References
    ----------
    The module docstring.
    """
    root = np.random.SeedSequence(int(base.seed))
    rng = np.random.default_rng(root.spawn(1)[0])  # child 0: sizes, names, then each commissioner's variations
    sizes = commissioner_sizes(base.n_practices, rng)
    children = root.spawn(len(sizes))  # children 1 .. K (spawn continues the count): the commissioners' seeds
    names = numbered_places(place_names(rng), 0, len(sizes))
    out = []
    for k, (size, child) in enumerate(zip(sizes, children)):
        seed = int(child.generate_state(1, np.uint64)[0] >> np.uint64(1))  # 63 bits, a Python int
        params = vary(base, rng, int(size), k, seed)
        problems = params.problems()
        if problems:
            raise ArgumentError(f"commissioner {commissioner_code(k)}: " + "; ".join(problems), problems)
        out.append(Commissioner(index=k, code=commissioner_code(k), name=f"{names[k]} PCT", params=params))
    return out


def national_from_flags(given: Mapping[str, str]) -> SynthParams:
    """The national settings ``pbc synth --national`` was given (field -> text as typed), checked.

    Parameters
    ----------
    given : mapping
        Field name -> the flag's text (:func:`pbc_analysis.synth.options.params_from_flags`'s input).

    Returns
    -------
    SynthParams
        ``seed``, ``n_practices`` = N and every other given field; the commissioners draw :data:`DRAWN_FIELDS`.

    Raises
    ------
    ArgumentError
        Naming the flag and the fix: no ``--practices``, N below 30, a drawn field given, or any problem of
        :func:`~pbc_analysis.synth.options.params_from_flags`.
    """
    drawn = [flag_label(f) for f in DRAWN_FIELDS if f in given and f not in ("seed", "n_practices")]
    if drawn:
        msg = (f"{', '.join(drawn)} cannot be given with --national: each commissioner draws its own (see "
               "national_truth.json); leave them out")
        raise ArgumentError(msg, [msg])
    if "n_practices" not in given:
        msg = f"--national needs --practices N, the practices of the nation ({MIN_SIZE} or more)"
        raise ArgumentError(msg, [msg])
    try:
        n = parse_flag("n_practices", given["n_practices"])
    except ValueError as exc:
        raise ArgumentError(f"--practices: {exc}", [f"--practices: {exc}"]) from None
    if n < MIN_SIZE:
        commissioner_sizes(n, np.random.default_rng(0))  # raises the message
    return params_from_flags(given)


# ---------------------------------------------------------------------------------------------
# writing, one commissioner at a time
# ---------------------------------------------------------------------------------------------
def _index_type(n: int) -> pa.DataType:
    """The narrowest dictionary index type for ``n`` values (as pandas' categorical codes)."""
    return pa.int8() if n < 2**7 else pa.int16() if n < 2**15 else pa.int32()


class _LargeTable:
    """One large table appended per commissioner to one Parquet (a row group or more each) or CSV file."""

    def __init__(self, path: Path, fmt: str, widths: dict[str, pa.DataType]) -> None:
        self.path, self.part, self.fmt, self.widths = path, path.with_name(path.name + ".part"), fmt, widths
        self.writer: pq.ParquetWriter | None = None
        self.schema: pa.Schema | None = None
        self.fh: IO[bytes] | None = None
        self.gz: gzip.GzipFile | None = None

    def append(self, df: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            table = pa.Table.from_pandas(df, preserve_index=False).replace_schema_metadata(None)
            if self.writer is None:  # national dictionary widths (the pandas metadata, per PCT, is left out)
                self.schema = pa.schema([pa.field(f.name, pa.dictionary(self.widths.get(f.name, f.type.index_type),
                                                                        f.type.value_type))
                                         if pa.types.is_dictionary(f.type) else f for f in table.schema])
                self.writer = pq.ParquetWriter(self.part, self.schema, compression="zstd", use_dictionary=True,
                                               write_statistics=True)
            self.writer.write_table(table.cast(self.schema))
            return
        data = _csv_bytes(df)
        if self.fh is None:
            self.fh = open(self.part, "wb")
            if self.fmt == "csv.gz":
                self.gz = gzip.GzipFile(filename="", mode="wb", fileobj=self.fh, mtime=0)
        else:
            data = data.split(b"\n", 1)[1]  # the header once
        (self.gz or self.fh).write(data)

    def close(self) -> Path:
        if self.writer is not None:
            self.writer.close()
        if self.gz is not None:
            self.gz.close()
        if self.fh is not None:
            self.fh.close()
        self.part.replace(self.path)
        return self.path


class _TruthFile:
    """``national_truth.json`` written entry by entry, with the bytes of ``json.dumps(.., sort_keys, indent=1)``."""

    def __init__(self, path: Path) -> None:
        self.path, self.part = path, path.with_name(path.name + ".part")
        self.fh = open(self.part, "w", encoding="utf-8", newline="\n")
        self.fh.write('{\n "commissioners": {')
        self.n = 0

    def add(self, code: str, entry: dict[str, Any]) -> None:
        text = json.dumps(entry, sort_keys=True, indent=1, allow_nan=False).replace("\n", "\n  ")
        self.fh.write(("," if self.n else "") + f"\n  {json.dumps(code)}: {text}")
        self.n += 1

    def close(self, national: dict[str, Any]) -> Path:
        text = json.dumps(national, sort_keys=True, indent=1, allow_nan=False).replace("\n", "\n ")
        self.fh.write(f"\n }},\n \"national\": {text}\n}}\n")
        self.fh.close()
        self.part.replace(self.path)
        return self.path


def _shared_check(shared: dict[str, pd.DataFrame], result: SynthResult, code: str) -> None:
    """Keep the first commissioner's national tables; every other commissioner's must equal them."""
    for name in SHARED_TABLES:
        if name not in shared:
            shared[name] = result.tables[name]
        elif not shared[name].equals(result.tables[name]):
            raise RuntimeError(f"commissioner {code}: its {name} table differs from the first commissioner's; the "
                               f"national tables must be one (give every commissioner the same window and tariff)")


def _paths(out: Path, fmt: str) -> dict[str, Path]:
    """The file of each table, after removing the files of the same tables in other formats."""
    paths = {}
    for name in TABLE_COLUMNS:
        ext = fmt if name in LARGE_TABLES else "csv"
        for other in FORMATS:
            stale = out / f"{name}.{other}"
            if other != ext and stale.exists():
                stale.unlink()
        paths[name] = out / f"{name}.{ext}"
    return paths


def _entry(c: Commissioner, result: SynthResult) -> dict[str, Any]:
    truth = json.loads(json.dumps(result.truth, sort_keys=True, allow_nan=False))  # as ground_truth.json holds it
    return {"name": c.name, "n_practices": int(c.params.n_practices), "seed": int(c.params.seed),
            "params": c.params.to_dict(), "truth": truth}


def write_national(out_dir: str | Path, commissioners: list[Commissioner], base: SynthParams, fmt: str = "parquet",
                   echo: Callable[[str], None] | None = print, events: bool = False) -> dict[str, Path]:
    """Generate every commissioner's PCT in code order and write the nation as one data directory.

    Parameters
    ----------
    out_dir : str or Path
        Created if absent; files of the same tables in other formats (and a single PCT's
        ``ground_truth.json``) are removed.
    commissioners : list of Commissioner
        :func:`plan_national`.
    base : SynthParams
        The national settings (recorded in the truth).
    fmt : {"parquet", "csv", "csv.gz"}
        The format of population, activity and referrals.
    echo : callable or None
        Progress, one line per commissioner (None: silent).
    events : bool
        Also write every commissioner's event-level extracts into ``<out_dir>/extracts/`` (one file per source;
        :class:`_NationalEvents`), for ``pbc ingest`` with ``commissioners: all``.

    Returns
    -------
    dict
        Table name (and ``commissioners``, ``national_truth``; with ``events``, every extract and
        ``events_truth``) -> path written.

    Raises
    ------
    ValueError
        For another ``fmt``.
    RuntimeError
        When a commissioner's national tables differ from the first's, or its codes are out of order.

    References
    ----------
    The module docstring; ``docs/data_dictionary.md``.
    """
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be 'parquet', 'csv' or 'csv.gz', got {fmt!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ground_truth.json").unlink(missing_ok=True)
    paths = _paths(out, fmt)
    widths = {"practice_code": _index_type(sum(c.params.n_practices for c in commissioners)),
              "provider_code": _index_type(sum(c.params.providers() for c in commissioners))}
    large = {name: _LargeTable(paths[name], fmt, widths) for name in LARGE_TABLES}
    small: dict[str, list[pd.DataFrame]] = {n: [] for n in TABLE_COLUMNS if n not in LARGE_TABLES + SHARED_TABLES}
    shared: dict[str, pd.DataFrame] = {}
    members, truth, last = [], _TruthFile(out / "national_truth.json"), ""
    extracts = _NationalEvents(out) if events else None
    for c in commissioners:
        start = time.perf_counter()
        result = generate(c.params)
        codes = result.tables["practices"]["practice_code"]
        if codes.iloc[0] <= last:
            raise RuntimeError(f"commissioner {c.code}: practice code {codes.iloc[0]} does not follow {last}")
        last = codes.iloc[-1]
        _shared_check(shared, result, c.code)
        for name in LARGE_TABLES:
            large[name].append(result.tables[name])
        for name in small:
            small[name].append(result.tables[name])
        members.append(pd.DataFrame({"practice_code": codes, "commissioner_code": pd.array([c.code] * len(codes), dtype="str"),
                                     "commissioner_name": pd.array([c.name] * len(codes), dtype="str")}))
        truth.add(c.code, _entry(c, result))
        if extracts is not None:
            extracts.add(c, result)
        if echo:
            echo(f"commissioner {c.index + 1}/{len(commissioners)} {c.code} {c.name}: {len(codes)} practices, "
                 f"{len(result.tables['providers'])} providers, {len(result.tables['activity']):,} activity rows "
                 f"({time.perf_counter() - start:.1f} s)")
        del result
    written = {name: t.close() for name, t in large.items()}
    tables = {name: pd.concat(parts, ignore_index=True) for name, parts in small.items()} | shared
    tables["commissioners"] = pd.concat(members, ignore_index=True)
    for name, df in tables.items():
        keys = TABLE_KEYS.get(name, ["practice_code"])
        if name not in SHARED_TABLES and len(df):  # (the shared ones as generated: reference rates in age order)
            df = df.sort_values(keys, kind="mergesort", ignore_index=True)
        if df.duplicated(keys).any():
            raise RuntimeError(f"{name}: {int(df.duplicated(keys).sum())} rows repeat a key of {', '.join(keys)} "
                               "across commissioners")
        path = out / f"{name}.csv"
        path.write_bytes(_csv_bytes(df))
        written[name] = path
    written["national_truth"] = truth.close(_national(base, commissioners))
    out_paths = {name: written[name] for name in [*TABLE_COLUMNS, *NATIONAL_TABLES, "national_truth"]}
    return out_paths | (extracts.close() if extracts is not None else {})


def _national(base: SynthParams, commissioners: list[Commissioner]) -> dict[str, Any]:
    """The national part of the truth: the settings, the sizes and the ranges of the drawn variations."""
    sizes = [int(c.params.n_practices) for c in commissioners]
    return {"generator": {"module": "pbc_analysis.synth.national", "model_version": SYNTH_MODEL_VERSION},
            "seed": int(base.seed), "n_practices": int(sum(sizes)), "n_commissioners": len(commissioners),
            "size_range": [MIN_SIZE, MAX_SIZE], "n_months": int(base.n_months), "start_month": str(base.start_month),
            "base_params": {k: v for k, v in base.to_dict().items() if k not in DRAWN_FIELDS},
            "drawn": RANGES, "shared_tables": list(SHARED_TABLES)}


# ---------------------------------------------------------------------------------------------
# event-level extracts of the nation
# ---------------------------------------------------------------------------------------------
def commissioner_codes(c: Commissioner) -> Codes:
    """The extracts' codes of commissioner ``c``: its code, its own planted practices and identifier offsets.

    The planted practices are ``W`` + 10000 + 4k + (0 closing, 1 not a GP practice, 2 unknown, 3 the merged old
    code); there is no practice of another commissioner (every commissioner of the nation is included by
    ``commissioners: all``). Event identifiers are offset by k x 10^9, patient tokens by k x 250 practices.

    Parameters
    ----------
    c : Commissioner

    Returns
    -------
    Codes

    References
    ----------
    :mod:`pbc_analysis.synth.events_reference` (the planted practices of a single PCT).
    """
    w = [f"W{10000 + 4 * c.index + j:05d}" for j in range(4)]
    return Codes(commissioner=c.code, extra=(("not_open_throughout_window", (w[0],)), ("not_gp_practice", (w[1],))),
                 unknown=w[2], old_code=w[3], id_offset=c.index * 10**9, patient_offset=c.index * 250)


def _sum(a: Any, b: Any) -> Any:
    """Two truth entries added leaf by leaf (numbers summed, text kept)."""
    if isinstance(a, dict):
        return {k: _sum(a[k], b[k]) if k in a and k in b else a.get(k, b.get(k)) for k in sorted(set(a) | set(b))}
    return a + b if isinstance(a, (int, float)) and not isinstance(a, bool) else a


class _NationalEvents:
    """Every commissioner's extracts written apart (``extracts/.parts/<code>/``), then merged into one file per
    source (Parquet row groups copied in commissioner order; CSV rows concatenated, the header once)."""

    CSV_FILES = ("registrations.csv", "practice_attributes.csv", "succession.csv", "providers.csv")

    def __init__(self, out: Path) -> None:
        self.out, self.extracts = out, out / "extracts"
        self.parts = self.extracts / ".parts"
        if self.parts.exists():
            shutil.rmtree(self.parts)  # the parts of an interrupted earlier run (made by this writer)
        self.done: list[tuple[Commissioner, Path]] = []
        self.files: dict[str, str] = {}

    def add(self, c: Commissioner, result: SynthResult) -> None:
        part = self.parts / c.code
        part.mkdir(parents=True)
        for name in LOCAL_TABLES:  # write_events copies the local tables from beside the extracts
            (part / f"{name}.csv").write_bytes(_csv_bytes(result.tables[name]))
        p = result.params
        paths = write_events(result.tables, part, seed=int(p.seed), start_month=str(p.start_month),
                             n_months=int(p.n_months), codes=commissioner_codes(c))
        self.files = {k: v.name for k, v in paths.items()}
        self.done.append((c, part / "extracts"))

    def close(self) -> dict[str, Path]:
        docs = {c.code: json.loads((d / "events_truth.json").read_text(encoding="utf-8")) for c, d in self.done}
        first = self.done[0][1]
        for name in [n for n, f in self.files.items() if f.endswith(".parquet")]:
            with pq.ParquetWriter(self.extracts / self.files[name], pq.read_schema(first / self.files[name]),
                                  compression="zstd", write_statistics=True) as writer:
                for _, d in self.done:
                    pf = pq.ParquetFile(d / self.files[name])
                    for g in range(pf.num_row_groups):
                        table = pf.read_row_group(g)
                        writer.write_table(table, row_group_size=max(1, table.num_rows))
        for file in self.CSV_FILES:  # streamed: the registrations are large
            with open(self.extracts / file, "wb") as sink:
                for i, (_, d) in enumerate(self.done):
                    with open(d / file, "rb") as part:
                        header = part.readline()
                        if i == 0:
                            sink.write(header)
                        shutil.copyfileobj(part, sink)
        lines = sorted(line for _, d in self.done for line in (d / "practice_reference.csv").read_bytes().splitlines())
        (self.extracts / "practice_reference.csv").write_bytes(b"".join(line + b"\n" for line in lines))
        shutil.copyfile(first / "prices.csv", self.extracts / "prices.csv")  # the national tariff
        (self.extracts / "local").mkdir(exist_ok=True)
        for name in LOCAL_TABLES:
            shutil.copyfile(self.out / f"{name}.csv", self.extracts / "local" / f"{name}.csv")
        shutil.rmtree(self.parts)
        return self._truth(docs)

    def _truth(self, docs: dict[str, dict[str, Any]]) -> dict[str, Path]:
        sources: dict[str, Any] = {}
        for doc in docs.values():
            sources = _sum(sources, doc["sources"]) if sources else doc["sources"]
        one = next(iter(docs.values()))["settings"]
        extra: dict[str, list[str]] = {}
        for doc in docs.values():
            for reason, codes in doc["settings"]["extra_practices"].items():
                extra.setdefault(reason, []).extend(codes)
        settings = {"commissioners": [c for doc in docs.values() for c in doc["settings"]["commissioners"]],
                    "pseudo_practices": one["pseudo_practices"], "start_month": one["start_month"],
                    "end_month": one["end_month"], "closing_date": one["closing_date"], "extra_practices": extra,
                    "merged": [doc["settings"]["merged"] for doc in docs.values()]}
        doc = {"sources": sources, "settings": settings, "files": {k: v for k, v in sorted(self.files.items())
                                                                   if k != "events_truth"},
               "commissioners": {code: {"sources": d["sources"], "settings": d["settings"]} for code, d in docs.items()}}
        path = self.extracts / "events_truth.json"
        path.write_bytes((json.dumps(doc, sort_keys=True, indent=1, allow_nan=False) + "\n").encode("utf-8"))
        return {name: self.extracts / f for name, f in self.files.items() if name != "events_truth"} | {"events_truth": path}
