"""Difference-in-differences for staggered adoption: TWFE, Callaway-Sant'Anna, Bacon decomposition, PPML.

Practices join practice based commissioning (PBC) at different times, so the evaluation is a
*staggered adoption* design: unit ``i`` (a GP practice) is first treated in period ``g_i`` (its
*cohort*) and stays treated; ``g_i = 0`` or missing means never treated in the data. The package:

==============================================  ===========================================================
module                                          what it holds
==============================================  ===========================================================
:mod:`~pbc_analysis.methods.did.twfe`            :func:`twfe`: the static two-way fixed effects regression
                                                ``y_it = a_i + l_t + b D_it + e_it`` with fixest's
                                                cluster-robust errors; :func:`fepois`: its Poisson (PPML)
                                                version for counts with a list-size offset
:mod:`~pbc_analysis.methods.did.attgt`           :func:`att_gt`: Callaway and Sant'Anna's group-time effects
                                                ``ATT(g, t)`` with analytic influence-function errors (as
                                                R's ``did::att_gt``) or the multiplier bootstrap;
                                                :func:`pretrend_test`: the Wald pre-test (and Hotelling's F)
:mod:`~pbc_analysis.methods.did.aggregate`       :func:`aggregate`: ``did::aggte``'s simple, group, dynamic
                                                (event-study) and calendar aggregations;
                                                :func:`relative_effect` (proportional effect with a
                                                delta-method interval) and :func:`total_effect` (effects
                                                times exposures, e.g. referrals avoided)
:mod:`~pbc_analysis.methods.did.bacon`           :func:`bacon_decomposition`: TWFE as a weighted average of
                                                all 2x2 comparisons (Goodman-Bacon 2021)
:mod:`~pbc_analysis.methods.did.inference`       the multiplier bootstrap and the influence of estimated weights
:mod:`~pbc_analysis.methods.did.projections`     alternating projections (the within transformation) and
                                                fixest's small-sample factor
:mod:`~pbc_analysis.methods.did.panel`           checks of the panel's columns, :func:`treated_from_cohort`
==============================================  ===========================================================

Each module's docstring holds its derivations. ``tests/test_did.py`` reproduces, on the ``did`` package's
``mpdta`` data and the Mixtape Sessions Medicaid-expansion data (``../shared/reference/did_*``), the numbers
published in the READMEs of ``did``, ``csdid`` and ``twfeweights`` and in the Advanced-DID course solutions
(``did``, ``fixest`` and ``bacondecomp`` output), and checks TWFE and PPML against statsmodels fits with
explicit dummies. All estimators are unweighted (every unit counts once; no sampling or population weights).

References
----------
Callaway B, Sant'Anna PHC (2021). Difference-in-differences with multiple time periods. J Econometrics
225:200-230.
Goodman-Bacon A (2021). Difference-in-differences with variation in treatment timing. J Econometrics
225:254-277.
Berge L (2018). Efficient estimation of maximum likelihood models with multiple fixed-effects: the R package
FENmlm. CREA Discussion Papers 13.
"""

from __future__ import annotations

from pbc_analysis.methods.did.aggregate import AggregateKind, AggregateResult, aggregate, relative_effect, total_effect
from pbc_analysis.methods.did.attgt import ATTgtFit, BasePeriod, ControlGroup, Multiplier, att_gt, pretrend_test
from pbc_analysis.methods.did.bacon import bacon_decomposition, bacon_summary
from pbc_analysis.methods.did.panel import treated_from_cohort
from pbc_analysis.methods.did.projections import _demean, _fixest_adjustment  # noqa: F401  (used by methods.ppml)
from pbc_analysis.methods.did.twfe import fepois, twfe

__all__ = [
    "ATTgtFit",
    "AggregateKind",
    "AggregateResult",
    "BasePeriod",
    "ControlGroup",
    "Multiplier",
    "aggregate",
    "att_gt",
    "bacon_decomposition",
    "bacon_summary",
    "fepois",
    "pretrend_test",
    "relative_effect",
    "total_effect",
    "treated_from_cohort",
    "twfe",
]
