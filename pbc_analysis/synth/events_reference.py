"""The reference extracts of ``pbc synth --events``: registrations, practice reference, attributes, succession,
providers, prices and the local tables, plus the :class:`Frame` every extract writer shares.

The synthetic PCT's practices belong to commissioner :data:`COMMISSIONER`. Beside them the reference knows
:data:`EXTRA_PRACTICES` (codes with the letter ``W``, which the generator never draws): two practices of another
commissioner, one closing in the middle of the window, one that is not a GP practice (prescribing setting 2);
:data:`UNKNOWN_PRACTICE` is in no reference. One practice of the PCT (drawn) absorbed an old practice,
:data:`OLD_CODE`, on the first day of month ``2M // 5`` (the merge date): before it, a share
:data:`OLD_SHARE` of that practice's events and of its registered patients carry the old code, which the
reference lists as closed at the merge date and the succession table maps to the practice. These codes and the
identifiers' offsets are a :class:`Codes` (the single PCT's by default; ``pbc synth --national`` gives each
commissioner its own commissioner code, planted practices and offsets, and no practice of another commissioner).

Files (in ``<out>/extracts/``; CSV UTF-8 with ``\\n``, no quoting but in ``practice_reference.csv``):

- ``registrations.csv``: ``PUBLICATION, EXTRACT_DATE, TYPE, ORG_CODE, SEX, AGE_GROUP_5, NUMBER_OF_PATIENTS`` as the
  public quinary-age files: one snapshot a month dated the 1st (``01APR2003``), ``SEX`` ``FEMALE``/``MALE``/``ALL``,
  ``AGE_GROUP_5`` ``0_4`` ... ``85_89``, ``90_94``, ``95+`` and ``ALL`` (rows ``ALL/ALL``, ``FEMALE/ALL``,
  ``MALE/ALL`` are totals); the population's ``90+`` count n splits into ``95+`` = floor(3n/10) and ``90_94`` the
  rest; rows for the PCT's practices, the old code (before the merge), the other commissioner's practices and
  the closing practice (before it closes), copied from practices of the PCT;
- ``practice_reference.csv``: epraccur-like, no header, 27 fields, every field quoted: 1 code, 2 name, 11 open
  date (``YYYYMMDD``), 12 close date, 13 status, 15 commissioner, 26 prescribing setting (4 = GP practice);
- ``practice_attributes.csv`` (``practice_code, consortium, imd_score, single_handed``), ``succession.csv``
  (``old_code, new_code, effective_date``), ``providers.csv`` (``provider_code, provider_name``);
- ``prices.csv`` (``financial_year, category, code, price``): the tariff as a payment-scheme long table,
  ``OP_FIRST``/``OP_FOLLOWUP`` by treatment function, ``APC_ELECTIVE``/``APC_NON_ELECTIVE``/``AE`` by the one
  synthetic HRG of each specialty and point of delivery (:func:`hrg_code`), so the fixed-weight index gives the
  tariff back;
- ``local/``: ``engagement, budgets, provider_changes, reference_rates, high_cost_patients`` copied byte for
  byte from the tables written beside the extracts.

References
----------
NHS Digital, "Patients registered at a GP practice" (quinary age files); NHS Digital ODS, ``epraccur.csv``
(field positions, prescribing setting codes); NHS England, National Tariff Payment System (price workbooks).
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from pbc_analysis.core import calendar
from pbc_analysis.synth.contract import AGE_BANDS

__all__ = ["COMMISSIONER", "EXTRA_PRACTICES", "LOCAL_TABLES", "OLD_CODE", "OLD_SHARE", "OTHER_COMMISSIONER",
           "PSEUDO_PRACTICES", "UNKNOWN_PRACTICE", "Codes", "Frame", "frame", "hrg_code", "write_reference"]

COMMISSIONER = "5ZZ"
OTHER_COMMISSIONER = "5ZY"
#: the pseudo practice codes the dirt uses (ingest's default list also has V81997)
PSEUDO_PRACTICES = ("V81999", "V81998")
#: codes the reference knows but that are excluded, by the reason ingest gives
EXTRA_PRACTICES: dict[str, tuple[str, ...]] = {
    "other_commissioner": ("W95001", "W95002"),
    "not_open_throughout_window": ("W95003",),
    "not_gp_practice": ("W95004",),
}
UNKNOWN_PRACTICE = "W95005"
OLD_CODE = "W95006"
OLD_SHARE = 0.4
LOCAL_TABLES = ("engagement", "budgets", "provider_changes", "reference_rates", "high_cost_patients")
PRICE_CATEGORY = {"first_op": "OP_FIRST", "followup_op": "OP_FOLLOWUP", "elective": "APC_ELECTIVE",
                  "non_elective": "APC_NON_ELECTIVE", "ae": "AE"}
_HRG_PREFIX = {"first_op": "OF", "followup_op": "OU", "elective": "EL", "non_elective": "NE", "ae": "VB"}
_SOURCE_BANDS = tuple(b.replace("-", "_") for b in AGE_BANDS[:-1]) + ("90_94", "95+")
_OPEN_DATE = "19740401"
_EPOCH = np.datetime64("1970-01-01", "D")


@dataclass(frozen=True)
class Codes:
    """The codes of one PCT's extracts: its commissioner, the planted extra practices, identifier offsets.

    The default is the single PCT's (:data:`COMMISSIONER`, :data:`EXTRA_PRACTICES`, :data:`UNKNOWN_PRACTICE`,
    :data:`OLD_CODE`, no offsets); ``pbc synth --national`` gives each commissioner its own
    (:func:`pbc_analysis.synth.national.commissioner_codes`), so codes and identifiers stay unique nationally.
    """

    commissioner: str = COMMISSIONER
    extra: tuple[tuple[str, tuple[str, ...]], ...] = tuple(EXTRA_PRACTICES.items())  # (reason, codes); may omit one
    unknown: str = UNKNOWN_PRACTICE
    old_code: str = OLD_CODE
    id_offset: int = 0             # added to every event identifier
    patient_offset: int = 0        # added to the practice index of the patient tokens

    @property
    def extras(self) -> dict[str, tuple[str, ...]]:
        """Exclusion reason -> the extra practice codes that give it."""
        return dict(self.extra)


def hrg_code(specialty: str, pod: str) -> str:
    """The synthetic HRG of a specialty and point of delivery (``EL110Z``: elective trauma and orthopaedics).

    Parameters
    ----------
    specialty : str
        Treatment function code.
    pod : str
        Point of delivery.

    Returns
    -------
    str

    References
    ----------
    The module docstring (one HRG per specialty and point of delivery).
    """
    return f"{_HRG_PREFIX[pod]}{specialty}Z"


def _day(month: str) -> int:
    return int((np.datetime64(f"{month}-01", "D") - _EPOCH).astype(np.int64))


@dataclass(frozen=True)
class Frame:
    """What every extract writer shares: the window's days, the code dictionaries and the merged practice.

    ``practices`` is the dictionary of every practice code an extract carries: the PCT's practices (in the
    tables' order), then :data:`OLD_CODE`, the :data:`EXTRA_PRACTICES`, :data:`UNKNOWN_PRACTICE` and the
    :data:`PSEUDO_PRACTICES`; ``reason_codes`` gives, per practice exclusion reason, their indices in it.
    """

    months: list[str]
    first_day: np.ndarray          # (M,) day number (days since 1970-01-01) of each month's 1st
    month_len: np.ndarray          # (M,) days in each month
    practices: list[str]
    providers: list[str]
    specialties: list[str]
    n_practices: int
    merged: int                    # index of the practice that absorbed OLD_CODE
    merge_month: int               # month index of the merge date
    close_month: int               # month index of the closing practice's close date
    seed: int
    codes: Codes = Codes()

    @property
    def start_day(self) -> int:
        """The window's first day."""
        return int(self.first_day[0])

    @property
    def end_day(self) -> int:
        """The window's last day."""
        return int(self.first_day[-1] + self.month_len[-1] - 1)

    @property
    def merge_day(self) -> int:
        """The merge date (the first day of ``merge_month``)."""
        return int(self.first_day[self.merge_month])

    @property
    def old_index(self) -> int:
        """Index of :data:`OLD_CODE` in ``practices``."""
        return self.n_practices

    def reason_codes(self) -> dict[str, np.ndarray]:
        """Practice exclusion reason -> indices in ``practices`` of the codes that give it (empty: missing code)."""
        at = {code: i for i, code in enumerate(self.practices)}
        out = {"practice_code_missing": np.array([-1]),
               "pseudo_practice": np.array([at[c] for c in PSEUDO_PRACTICES]),
               "unknown_practice": np.array([at[self.codes.unknown]])}
        return out | {reason: np.array([at[c] for c in codes]) for reason, codes in self.codes.extra}

    def date_text(self, day: int) -> str:
        """A day number as ISO ``YYYY-MM-DD``."""
        return str(_EPOCH + np.timedelta64(day, "D"))


def frame(tables: dict[str, pd.DataFrame], start_month: str, n_months: int, seed: int, codes: Codes | None = None) -> Frame:
    """The :class:`Frame` of a synthetic PCT.

    Parameters
    ----------
    tables : dict
        The generator's tables (``SynthResult.tables``).
    start_month : str
        First month of the window, ``YYYY-MM``.
    n_months : int
    seed : int
        The PCT's seed (the merged practice is drawn from it).
    codes : Codes, optional
        The commissioner, extra practices and offsets (default: the single PCT's).

    Returns
    -------
    Frame

    References
    ----------
    The module docstring.
    """
    months = calendar.month_range(start_month, calendar.add_months(start_month, n_months - 1))
    first = np.array([_day(m) for m in months] + [_day(calendar.add_months(months[-1], 1))], dtype=np.int64)
    cs = codes or Codes()
    own = [str(c) for c in tables["practices"]["practice_code"]]
    extra = [cs.old_code] + [c for _, group in cs.extra for c in group] + [cs.unknown, *PSEUDO_PRACTICES]
    rng = np.random.default_rng([seed, 14, 0])
    return Frame(months=months, first_day=first[:-1], month_len=np.diff(first), practices=own + extra,
                 providers=[str(c) for c in tables["providers"]["provider_code"]],
                 specialties=[str(c) for c in tables["specialties"]["specialty_code"]], n_practices=len(own),
                 merged=int(rng.integers(len(own))), merge_month=(2 * n_months) // 5, close_month=n_months // 2,
                 seed=seed, codes=cs)


def _csv(columns: dict[str, Any], path: Path) -> None:
    """A CSV file of plain columns, header and values unquoted (the values hold no commas or quotes)."""
    table = pa.table({k: pa.array(v) for k, v in columns.items()})
    sink = io.BytesIO()
    pacsv.write_csv(table, sink, write_options=pacsv.WriteOptions(include_header=False, quoting_style="none"))
    path.write_bytes((",".join(columns) + "\n").encode("utf-8") + sink.getvalue())


def _registration_counts(fr: Frame, population: pd.DataFrame) -> tuple[list[str], np.ndarray]:
    """Organisation codes (sorted) and their counts (O, M, 2 sexes, 20 source bands) of the registrations file."""
    P, M = fr.n_practices, len(fr.months)
    reg = population["registered"].to_numpy(dtype=np.int64)
    if reg.size != P * M * 38 or list(population["practice_code"].iloc[:: M * 38]) != fr.practices[:P]:
        raise ValueError("population is not the generator's dense table sorted by practice, month, age band, sex")
    r = reg.reshape(P, M, 19, 2).transpose(0, 1, 3, 2)                   # (P, M, sex, band)
    top = r[..., 18] * 3 // 10
    counts = np.concatenate([r[..., :18], (r[..., 18] - top)[..., None], top[..., None]], axis=3)  # 20 bands
    extras = fr.codes.extras
    orgs = {code: counts[(k + 1) % P].copy() for k, code in enumerate(extras.get("other_commissioner", ()))}
    closing = counts[3 % P].copy()
    closing[fr.close_month:] = 0
    orgs[extras["not_open_throughout_window"][0]] = closing
    before = np.arange(M) < fr.merge_month
    old = np.where(before[:, None, None], counts[fr.merged] * 2 // 5, 0)  # floor(2n/5) ~ OLD_SHARE
    counts[fr.merged] -= old
    orgs |= {code: counts[i] for i, code in enumerate(fr.practices[:P])} | {fr.codes.old_code: old}
    names = sorted(orgs)
    return names, np.stack([orgs[c] for c in names])


def _registrations(fr: Frame, population: pd.DataFrame, path: Path) -> dict[str, Any]:
    """Write ``registrations.csv``; its truth: rows read and by outcome (``patients`` in place of cost)."""
    names, counts = _registration_counts(fr, population)     # (O, M, 2, 20)
    O, M = counts.shape[:2]
    sex_total = counts.sum(axis=3)                            # (O, M, 2)
    block = np.concatenate([sex_total.sum(axis=2)[..., None], sex_total[..., :1], counts[:, :, 0],
                            sex_total[..., 1:], counts[:, :, 1]], axis=2)        # (O, M, 43)
    sexes = ["ALL", "FEMALE"] + ["FEMALE"] * 20 + ["MALE"] + ["MALE"] * 20
    bands = ["ALL", "ALL", *_SOURCE_BANDS, "ALL", *_SOURCE_BANDS]
    alive = counts.sum(axis=(2, 3)) > 0                       # (O, M): rows only while the organisation exists
    om = np.argwhere(alive.T)                                 # (month, org) pairs, months first
    cols = block.transpose(1, 0, 2)[om[:, 0], om[:, 1]]       # (rows/43, 43)
    n = om.shape[0]
    stamp = np.array([_day_label(fr.first_day[m], fr) for m in range(M)])
    _csv({"PUBLICATION": np.repeat(np.array(["GP_PRAC_PAT_LIST"]), n * 43),
          "EXTRACT_DATE": np.repeat(stamp[om[:, 0]], 43), "TYPE": np.repeat(np.array(["GP"]), n * 43),
          "ORG_CODE": np.repeat(np.array(names)[om[:, 1]], 43), "SEX": np.tile(np.array(sexes), n),
          "AGE_GROUP_5": np.tile(np.array(bands), n), "NUMBER_OF_PATIENTS": cols.reshape(-1)}, path)
    org = np.repeat(np.array(names)[om[:, 1]], 43)
    total = np.tile(np.array([b == "ALL" for b in bands]), n)
    values = cols.reshape(-1)
    reason = {code: r for r, codes in fr.codes.extra for code in codes}
    out: dict[str, Any] = {"file": path.name, "read": _n(values, np.ones(values.size, bool)),
                           "excluded": {"total_row": _n(values, total)}}
    for code, r in reason.items():
        if code in names:
            out["excluded"][r] = _add(out["excluded"].get(r), _n(values, ~total & (org == code)))
    known = set(reason)
    out["aggregated"] = _n(values, ~total & ~np.isin(org, list(known)))
    out["merged"] = _n(values, ~total & (org == fr.codes.old_code))
    return out


_MONTH_ABBR = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _day_label(day: int, fr: Frame) -> str:
    """A day as the registration files write it: ``01APR2005``."""
    d = fr.date_text(int(day))
    return f"{d[8:10]}{_MONTH_ABBR[int(d[5:7]) - 1]}{d[:4]}"


def _n(values: np.ndarray, mask: np.ndarray) -> dict[str, int]:
    return {"rows": int(mask.sum()), "patients": int(values[mask].sum())}


def _add(a: dict[str, int] | None, b: dict[str, int]) -> dict[str, int]:
    return b if a is None else {k: a[k] + b[k] for k in b}


def _practice_reference(fr: Frame, practices: pd.DataFrame, path: Path) -> None:
    """Write the epraccur-like ``practice_reference.csv`` (no header, 27 fields, all quoted)."""
    names = dict(zip(practices["practice_code"].astype(str), practices["practice_name"].astype(str)))
    extras = fr.codes.extras
    close = {fr.codes.old_code: fr.date_text(fr.merge_day).replace("-", ""),
             extras["not_open_throughout_window"][0]: fr.date_text(int(fr.first_day[fr.close_month])).replace("-", "")}
    commissioner = dict.fromkeys(extras.get("other_commissioner", ()), OTHER_COMMISSIONER)
    setting = dict.fromkeys(extras["not_gp_practice"], "2")
    codes = sorted(set(fr.practices[:fr.n_practices]) | {fr.codes.old_code} | {c for cs in extras.values() for c in cs})
    buf = io.StringIO()
    w = csv.writer(buf, quoting=csv.QUOTE_ALL, lineterminator="\n")
    for i, code in enumerate(codes):
        row = [""] * 27
        row[0], row[1] = code, names.get(code, f"Synthetic Surgery {code}")
        row[2], row[3] = "Y99", "Q99"
        row[4], row[5], row[9] = f"{i + 1} High Street", "Synthtown", f"ZZ{1 + i % 9} {1 + i % 9}AA"
        row[10], row[11] = _OPEN_DATE, close.get(code, "")
        row[12], row[13] = ("C" if code in close else "A"), "B"
        row[14] = commissioner.get(code, fr.codes.commissioner)
        row[15], row[17], row[21] = _OPEN_DATE, f"01000 {100000 + i}", "0"
        row[23], row[25] = row[14], setting.get(code, "4")
        w.writerow(row)
    path.write_text(buf.getvalue(), encoding="utf-8")


def _attributes(practices: pd.DataFrame, path: Path) -> None:
    df = pd.DataFrame({"practice_code": practices["practice_code"].astype(str),
                       "consortium": practices["consortium"].astype(str),
                       "imd_score": practices["imd_score"].to_numpy(dtype=float),
                       "single_handed": np.where(practices["single_handed"].to_numpy(dtype=bool), "true", "false")})
    path.write_bytes(df.to_csv(index=False, float_format="%.2f", lineterminator="\n").encode("utf-8"))


def _prices(tariff: pd.DataFrame, path: Path) -> None:
    spec, pod = tariff["specialty_code"].astype(str).tolist(), tariff["pod"].astype(str).tolist()
    code = [s if p in ("first_op", "followup_op") else hrg_code(s, p) for s, p in zip(spec, pod)]
    df = pd.DataFrame({"financial_year": tariff["financial_year"].astype(str),
                       "category": [PRICE_CATEGORY[p] for p in pod], "code": code,
                       "price": tariff["price"].to_numpy(dtype=float)})
    df = df.sort_values(["financial_year", "category", "code"]).reset_index(drop=True)
    path.write_bytes(df.to_csv(index=False, float_format="%.2f", lineterminator="\n").encode("utf-8"))


def write_reference(fr: Frame, tables: dict[str, pd.DataFrame], tables_dir: Path, out: Path) -> dict[str, Any]:
    """Write the reference extracts and copy the local tables.

    Parameters
    ----------
    fr : Frame
    tables : dict
        The generator's tables.
    tables_dir : Path
        Where :func:`pbc_analysis.synth.write.write_tables` wrote them (the local tables are copied from there).
    out : Path
        The extracts directory.

    Returns
    -------
    dict
        ``registrations``'s truth (rows read, aggregated, excluded by reason, merged; patients in place of cost)
        and ``files``: extract name -> file name.

    Raises
    ------
    FileNotFoundError
        When a local table is not in ``tables_dir`` (write the tables first).

    References
    ----------
    The module docstring.
    """
    truth = _registrations(fr, tables["population"], out / "registrations.csv")
    _practice_reference(fr, tables["practices"], out / "practice_reference.csv")
    _attributes(tables["practices"], out / "practice_attributes.csv")
    _csv({"old_code": [fr.codes.old_code], "new_code": [fr.practices[fr.merged]], "effective_date": [fr.date_text(fr.merge_day)]},
         out / "succession.csv")
    _csv({"provider_code": tables["providers"]["provider_code"].astype(str).tolist(),
          "provider_name": tables["providers"]["provider_name"].astype(str).tolist()}, out / "providers.csv")
    _prices(tables["tariff"], out / "prices.csv")
    local = out / "local"
    local.mkdir(exist_ok=True)
    for name in LOCAL_TABLES:
        src = tables_dir / f"{name}.csv"
        if not src.is_file():
            raise FileNotFoundError(f"{src}: the local table {name} is copied from the tables' directory; write the tables first")
        shutil.copyfile(src, local / f"{name}.csv")
    files = {"registrations": "registrations.csv", "practice_reference": "practice_reference.csv",
             "practice_attributes": "practice_attributes.csv", "succession": "succession.csv",
             "provider_reference": "providers.csv", "prices": "prices.csv"}
    return {"registrations": truth, "files": files}
