"""Savings attribution (notebook 04): who saved what when hospital spend changed, and how the savings are shared.

When a PCT's hospital spend changes, practices say their referral behaviour did it, the commissioner says the
hospital changed its follow-up policy or the tariff moved (Audit Commission 2007, para 78; ``../shared/DOMAIN.md``).
The stage settles it in three steps and applies the sharing rules. One module per step:

==========================  ======================================================================================
module                      what it holds
==========================  ======================================================================================
:mod:`.params`              :class:`Params`: every setting of notebook 04 (types, defaults, choices, ranges), the
                            rules deriving ``base_year`` and ``evaluation_year`` from the data, and the rules
                            checked against the data before anything runs
:mod:`.common`              the spend identity's factors and ledger lines; codes; registered and need-weighted lists
:mod:`.panel`               completeness of the latest months (the SUS lag), the referral panel, the cost of a
                            referral
:mod:`.causal`              practice action by Poisson imputation (saturated ETWFE Poisson; fitted by
                            :mod:`pbc_analysis.methods.ppml`), delta-method, cluster-robust and wild-bootstrap
                            uncertainty, and the precision floor
:mod:`.precision`           how precise the saving is against that floor, and the chance of landing within 10%
:mod:`.completion`          the data lag's completion error in every interval: the savings' and lines' gradients
:mod:`.decomposition`       exact accounting of each change in spend: cells, factors, LMDI-I and Shapley
:mod:`.delta`               standard errors of the accounting lines by the delta method (exact, by complex step)
:mod:`.bootstrap`           the same by a streamed Poisson bootstrap of the counts (the delta method's check)
:mod:`.ledger`              the ledger (lines adding up to the change on every row), the disputed provider change,
                            sharing the resources freed up
:mod:`.stage`               :func:`run` (everything at once) and :class:`Result` (``tables()``, ``headline()``,
                            ``describe()``)
==========================  ======================================================================================

1. Exact accounting: spend of each practice x provider x specialty x point of delivery x year is the product of
   the spend identity (list, need, referral or emergency rate, the provider's conversion, follow-up ratio and HRG
   mix, tariff, local variation); each change from the base year is split exactly into one part per factor.
2. Causal attribution: GP referrals by Poisson pseudo-maximum likelihood with practice x provider x specialty and
   provider x specialty x month fixed effects, the engaged practice-months imputed from the untreated ones;
   referrals avoided are valued at the provider's current cost per referral.
3. The ledger: per practice, consortium and PCT, the change split into population, need, tariff, provider change,
   practice action and an unexplained remainder; then the sharing rules (only practice action is eligible, up to
   the underspend; possible under-referrers held until reviewed; recurrent only when sustained; 70/30 split).

References
----------
Audit Commission (2007), *Putting commissioning into practice*; Ang BW (2005), Energy Policy 33:867-871; Shorrocks
AF (2013), J Econ Inequality 11:99-126; Borusyak K, Jaravel X, Spiess J (2024), Rev Econ Stud 91:3253-3285;
Correia S, Guimaraes P, Zylkin T (2020), Stata J 20:95-115.
"""

from __future__ import annotations

from pbc_analysis.stages.attribution.bootstrap import decomposition_intervals
from pbc_analysis.stages.attribution.causal import PracticeAction, etwfe_poisson, practice_action
from pbc_analysis.stages.attribution.common import ELECTIVE_PODS, EMERGENCY_PODS, FACTORS, LEDGER_LINES, LINE_FACTORS, LINE_LABELS
from pbc_analysis.stages.attribution.decomposition import decompose, lmdi, shapley, spend_cells, spend_factors
from pbc_analysis.stages.attribution.delta import decomposition_delta
from pbc_analysis.stages.attribution.ledger import dispute_table, ledger, share_savings
from pbc_analysis.stages.attribution.panel import completeness_covariance, completeness_factors, cost_per_referral, referral_panel
from pbc_analysis.stages.attribution.params import DEFAULTS, Basis, BootstrapWeights, Cells, Inference, Method, Params, base_year_rule, evaluation_year_rule
from pbc_analysis.stages.attribution.precision import chance_within, precision
from pbc_analysis.stages.attribution.safety import safety_check, safety_flags
from pbc_analysis.stages.attribution.stage import GROUP, NOTIONAL_TARGET, Result, describe, headline, notional_text, result_tables, run

__all__ = [
    "DEFAULTS",
    "ELECTIVE_PODS",
    "EMERGENCY_PODS",
    "FACTORS",
    "GROUP",
    "LEDGER_LINES",
    "LINE_FACTORS",
    "LINE_LABELS",
    "NOTIONAL_TARGET",
    "Basis",
    "BootstrapWeights",
    "Cells",
    "Inference",
    "Method",
    "Params",
    "PracticeAction",
    "Result",
    "base_year_rule",
    "chance_within",
    "completeness_covariance",
    "completeness_factors",
    "cost_per_referral",
    "decompose",
    "decomposition_delta",
    "decomposition_intervals",
    "describe",
    "dispute_table",
    "etwfe_poisson",
    "evaluation_year_rule",
    "headline",
    "ledger",
    "lmdi",
    "notional_text",
    "practice_action",
    "precision",
    "referral_panel",
    "result_tables",
    "run",
    "safety_check",
    "safety_flags",
    "share_savings",
    "shapley",
    "spend_cells",
    "spend_factors",
]
