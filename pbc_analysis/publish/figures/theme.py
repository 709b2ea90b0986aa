"""The one figure theme: seaborn whitegrid, a colour-blind-safe palette, fixed fonts and sizes, labels.

Every figure module calls :func:`set_theme` and takes its colours from :data:`PALETTE`, so that every figure
in the report looks alike.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; notebooks still show figures inline

import matplotlib.pyplot as plt  # noqa: E402
import seaborn as sns  # noqa: E402

PALETTE = "colorblind"
POD_LABELS = {
    "gp_referral": "GP referrals",
    "first_op": "First outpatient",
    "followup_op": "Follow-up outpatient",
    "elective": "Elective admissions",
    "non_elective": "Non-elective admissions",
    "ae": "A&E attendances",
}


def set_theme() -> None:
    """The project's figure theme (seaborn whitegrid, colour-blind palette, fixed fonts and size)."""
    sns.set_theme(style="whitegrid", palette=PALETTE, context="notebook", rc={"figure.dpi": 100, "savefig.dpi": 110})
    plt.rcParams["svg.hashsalt"] = "pbc"  # stable ids if figures are ever saved as SVG
