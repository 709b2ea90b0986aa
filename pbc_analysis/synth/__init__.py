"""A synthetic primary care trust (PCT) with planted effects and a known ground truth.

This is the embedded default data of the project (``data/sample/``) and the ground truth every
estimator is checked against. ``pbc synth`` writes one (its flags are the fields of
:class:`SynthParams`); the same parameters give byte-identical files. Calibration numbers come from
``../shared/DOMAIN.md`` ("Numbers for calibrating synthetic data (England)") unless stated otherwise.

Notation: practice p, provider v, specialty s (12 elective treatment functions; ``180`` is A&E),
age-sex cell a (19 ESP-2013 bands x F/M), month m = 0..M-1 from ``start_month``, t(m) = m/12 in
years, moy(m) its calendar month, FY(m) its financial year (April to March), z_p the standardised
IMD score of p (sample mean and SD, recorded in the truth).

The model, step by step, is written in the docstrings of the modules that implement it:

================  =========================================================================================
module            what it holds
================  =========================================================================================
params            :class:`SynthParams`: every shape option and effect size with its default, type, range and
                  help text (the one source of ``pbc synth``'s flags); the rules that derive the defaults
                  from the window (cohort timing, provider cut, structural change); the checks
options           ``pbc synth``'s flags generated from :class:`SynthParams`, their parsing (months or offsets,
                  ``code=value`` pairs) and :func:`params_from_flags`
calibration       the pyramid, the 12 specialties' rates, conversions, follow-up ratios and prices, the need
                  curves, names; :data:`SYNTH_MODEL_VERSION`, :data:`LMDI_FACTORS`
contract          the file contract: :data:`TABLE_COLUMNS`, :data:`TABLE_KEYS`, :data:`LARGE_TABLES`, codes
world             window, providers, practices (lists, IMD, consortia), engagement cohorts and under-referrers,
                  practice-provider pairs, the registered population and weighted lists
activity          expected referrals (the engagement effect), outpatients and electives (the provider cut),
                  emergency activity, the tariff, the activity cube, the data lag and cost
tables            the tables as data frames in the data dictionary's format, the reference rates
truth             expected spend and counterfactuals, the LMDI-I decomposition, the truth dictionary,
                  :func:`lmdi_decompose`, :func:`without_provider_cut`
budgets           the historic budgets and the high-cost patients
generator         :func:`generate`: runs the steps in order (one child random generator each), returns a
                  :class:`SynthResult`
write             :func:`write_tables`, :func:`write_synthetic_pct` (Parquet / CSV, ``ground_truth.json``),
                  :func:`write_result_events` (``pbc synth --events``)
events            :func:`write_events`: the PCT as event-level extracts in ``<out>/extracts/`` (outpatients, admitted
                  care, A&E, e-RS referrals as Parquet, one row per event of the tables) with seeded dirt the ingest
                  rules handle, and ``events_truth.json`` (rows and cost per source and exclusion reason)
events_reference  the reference extracts: GP registrations (quinary ages), the epraccur-like practice
                  reference, practice attributes, succession (one merged practice), providers, prices, local tables;
                  :class:`~pbc_analysis.synth.events_reference.Codes` (a commissioner's codes and identifier offsets)
national          ``pbc synth --national``: :func:`~pbc_analysis.synth.national.plan_national` splits N practices
                  into commissioners of 30 to 200 (each its own seed, ``code_block``, timing and planted effects);
                  :func:`~pbc_analysis.synth.national.write_national` writes the nation one commissioner at a
                  time: the tables, ``commissioners.csv``, ``national_truth.json`` (and with ``events`` the
                  extracts of all of them, one file per source)
================  =========================================================================================

The sample is ``make sample`` = ``pbc synth --seed 20070401 --practices 60 --months 60 --start 2003-04
--out data/sample`` = ``write_synthetic_pct("data/sample", seed=20070401, n_practices=60, n_months=60,
start_month="2003-04", fmt="parquet")``; with ``--events`` (``events=True``) the same PCT is also written as
event-level extracts for ``pbc ingest`` (``configs/ingest_sample.yaml``). ``make national`` = ``pbc synth --national
--seed 20070401 --practices 6500 --months 60 --start 2003-04 --out data/national`` (README "A synthetic nation").

References
----------
``../shared/DOMAIN.md``; ``docs/data_dictionary.md`` (the file contract).
"""

from __future__ import annotations

from pbc_analysis.synth.calibration import LMDI_FACTORS, SYNTH_MODEL_VERSION
from pbc_analysis.synth.contract import LARGE_TABLES, TABLE_COLUMNS, TABLE_KEYS
from pbc_analysis.synth.events import write_events
from pbc_analysis.synth.generator import SynthResult, generate
from pbc_analysis.synth.national import plan_national, write_national
from pbc_analysis.synth.options import SynthFlag, flags, params_from_flags
from pbc_analysis.synth.params import SynthParams, pipeline_warnings
from pbc_analysis.synth.truth import lmdi_decompose, without_provider_cut
from pbc_analysis.synth.write import write_result_events, write_synthetic_pct, write_tables

__all__ = [
    "LARGE_TABLES",
    "LMDI_FACTORS",
    "SYNTH_MODEL_VERSION",
    "SynthFlag",
    "SynthParams",
    "SynthResult",
    "TABLE_COLUMNS",
    "TABLE_KEYS",
    "flags",
    "generate",
    "lmdi_decompose",
    "params_from_flags",
    "pipeline_warnings",
    "plan_national",
    "without_provider_cut",
    "write_events",
    "write_national",
    "write_result_events",
    "write_synthetic_pct",
    "write_tables",
]
