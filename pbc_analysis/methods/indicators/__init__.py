"""Public-health indicator methods: crude rates, proportions, means, DSRs and ISRs with confidence limits.

A vectorised port of the methods of the UKHSA R package PHEindicatormethods v2.1.0 (GPL-3; functions
``calculate_rate``/``phe_rate``, ``phe_proportion``, ``phe_mean``, ``calculate_dsr``,
``calculate_ISRatio`` and ``calculate_ISRate``, with the internal ``byars_lower``/``byars_upper`` and
``wilson_lower``/``wilson_upper``), reproducing the package's own test vectors (see
``tests/test_indicators.py``). Every function takes and returns tidy DataFrames; none loops over rows or
groups in Python.

Confidence limits
-----------------
Poisson counts ``O`` (rates, ISRs, DSRs):

* *Byar's approximation* (Breslow and Day 1987, vol. II), used from 10 events::

      lower = O * (1 - 1/(9 O) - z / (3 sqrt(O)))^3
      upper = (O + 1) * (1 - 1/(9 (O + 1)) + z / (3 sqrt(O + 1)))^3

  with ``z = Phi^-1(c + (1 - c)/2)``. A negative lower limit (tiny ``O`` at high confidence, e.g.
  ``O = 1`` at 99.8%) is returned as missing, as PHE does.
* *Exact Poisson* limits via chi-squared quantiles (Armitage and Berry 2002), used below 10 events::

      lower = chi2_{(1-c)/2}(2 O) / 2            (0 when O = 0)
      upper = chi2_{c+(1-c)/2}(2 O + 2) / 2

Proportions ``x / n``: the *Wilson score* interval (Wilson 1927; Newcombe and Altman 2000)::

      (2x + z^2 -/+ z sqrt(z^2 + 4x(1 - x/n))) / (2 (n + z^2))

Means: Student's t, ``mean -/+ |t_{(1-c)/2, k-1}| s / sqrt(k)``.

Confidence levels and column names
----------------------------------
``confidence`` is a fraction in [0.9, 1), e.g. ``0.95`` or ``0.998``, or a list/tuple of such levels
to get several intervals at once. Percentages (PHE also accepts ``95``) are rejected so that a level
is never ambiguous. Limit columns are always suffixed with the level, also for a single level:

* ``0.95``  -> ``lower_95_0``, ``upper_95_0``  (PHE: ``lowercl``/``uppercl`` for a single level,
  ``lower95_0cl``/``upper95_0cl`` when both levels are requested);
* ``0.998`` -> ``lower_99_8``, ``upper_99_8``  (PHE: ``lowercl``/``uppercl`` or ``lower99_8cl``/``upper99_8cl``);
* any other level likewise, e.g. ``0.9`` -> ``lower_90_0``, ``0.9999`` -> ``lower_99_99`` (see :func:`ci_suffix`).

Each output also carries PHE's metadata columns ``confidence`` (e.g. ``"95%, 99.8%"``), ``statistic``
(e.g. ``"rate per 100000"``) and ``method`` (``"Byars"``, ``"Exact"``, ``"Wilson"``, ``"Dobson"``, ...).

Missing values follow PHE: a crude rate or proportion with a missing numerator or denominator is
missing (and a group containing one is missing when ``by`` is given, since PHE sums without
``na.rm``); missing age-band counts in a DSR or ISR count as zero events.

Modules: :mod:`~pbc_analysis.methods.indicators.limits` (confidence levels and limits on arrays),
:mod:`~pbc_analysis.methods.indicators.rates` (crude rates, proportions, means),
:mod:`~pbc_analysis.methods.indicators.standardised` (DSRs, ISRs, reference rates) and
:mod:`~pbc_analysis.methods.indicators.frames` (their shared DataFrame plumbing).
"""

from __future__ import annotations

from pbc_analysis.methods.indicators.limits import (
    EXACT_BELOW,
    ConfidenceArg,
    byars_lower,
    byars_upper,
    ci_suffix,
    confidence_levels,
    poisson_exact_lower,
    poisson_exact_upper,
    poisson_limits,
    wilson_lower,
    wilson_upper,
)
from pbc_analysis.methods.indicators.rates import crude_rate, mean_ci, proportion
from pbc_analysis.methods.indicators.standardised import (
    DSR_MIN_COUNT,
    ESP2013,
    ESP2013_BANDS,
    IsrType,
    dsr,
    indirectly_standardised,
    isr,
    reference_rates,
)

__all__ = [
    "DSR_MIN_COUNT",
    "ESP2013",
    "ESP2013_BANDS",
    "EXACT_BELOW",
    "ConfidenceArg",
    "IsrType",
    "byars_lower",
    "byars_upper",
    "ci_suffix",
    "confidence_levels",
    "crude_rate",
    "dsr",
    "indirectly_standardised",
    "isr",
    "mean_ci",
    "poisson_exact_lower",
    "poisson_exact_upper",
    "poisson_limits",
    "proportion",
    "reference_rates",
    "wilson_lower",
    "wilson_upper",
]
