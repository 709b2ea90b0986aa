"""The one figure theme: seaborn whitegrid, a colour-blind-safe palette, fixed fonts and sizes, labels.

Every figure module calls :func:`set_theme` and takes its colours from :data:`PALETTE`, so that every figure
in the report looks alike. Axes that readers misread are labelled here once: log axes as plain numbers
(:func:`readable_log_axis`), event time in its unit (:func:`event_time_axis`).
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; notebooks still show figures inline

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402

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


def plain_number(value: float, _pos: object = None) -> str:
    """A tick label as a plain number: thousands separators, no exponent (``2,000``, ``0.5``, ``50,000``).

    Parameters
    ----------
    value : float
        The tick's value.
    _pos : object, optional
        The tick's position (matplotlib's formatter signature; unused).

    Returns
    -------
    str

    References
    ----------
    matplotlib, ``matplotlib.ticker.FuncFormatter``, https://matplotlib.org/stable/api/ticker_api.html.
    """
    if not np.isfinite(value):
        return ""
    if abs(value) >= 1000 or float(value).is_integer():
        return f"{value:,.0f}"
    return f"{value:,.3g}"


def readable_log_axis(ax: Axes, axis: str = "x") -> None:
    """Ticks of a log-scaled axis at 1, 2 and 5 times powers of ten (1 only over more than two decades), as plain
    numbers with thousands separators (:func:`plain_number`), never ``10^x``; minor ticks unlabelled.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes; call after the data are drawn and the limits set.
    axis : {"x", "y"}
        The log-scaled axis.

    Returns
    -------
    None

    References
    ----------
    matplotlib, ``matplotlib.ticker.LogLocator``, https://matplotlib.org/stable/api/ticker_api.html.
    """
    target = ax.xaxis if axis == "x" else ax.yaxis
    lo, hi = ax.get_xlim() if axis == "x" else ax.get_ylim()
    decades = np.log10(max(hi, 1e-300) / max(lo, 1e-300)) if lo > 0 and hi > 0 else 3.0
    subs = (1.0, 2.0, 5.0) if decades <= 2.0 else (1.0,)
    target.set_major_locator(mt.LogLocator(base=10.0, subs=subs))
    target.set_major_formatter(mt.FuncFormatter(plain_number))
    target.set_minor_formatter(mt.NullFormatter())


#: Names of the difference-in-differences period by its length in months: (plural name, tick suffix).
PERIOD_UNITS: dict[int, tuple[str, str]] = {1: ("months", "m"), 3: ("quarters", "q"), 6: ("half-years", "h"),
                                            12: ("years", "y")}


def event_time_axis(ax: Axes, event_times: np.ndarray, period_months: int, since: str = "engagement") -> None:
    """Label an event-study axis in its unit: ticks ``-8 q``, ``-4 q``, ``0``, ``+4 q`` for quarters (``m`` for
    months, ``h`` half-years, ``y`` years; other lengths are called periods of N months) and the axis
    "quarters since engagement (0 = quarter of engagement)".

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes whose x axis holds event time (periods since ``since``).
    event_times : numpy.ndarray
        The event times drawn (integers).
    period_months : int
        Months per period (the evaluation's ``period_months``).
    since : str
        What event time counts from.

    Returns
    -------
    None

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230 (event time e = t - g).
    """
    plural, suffix = PERIOD_UNITS.get(int(period_months), (f"periods of {int(period_months)} months", "p"))
    singular = plural[:-1] if plural.endswith("s") and int(period_months) in PERIOD_UNITS else "period"
    e = np.unique(np.asarray(event_times, dtype=float))
    e = e[np.isfinite(e)]
    if e.size:
        per_year = 12 // int(period_months) if 12 % int(period_months) == 0 else 4
        steps = [d for d in range(1, per_year + 1) if per_year % d == 0] + [k * per_year for k in (2, 5, 10, 10 ** 6)]
        step = next(s for s in steps if (e.max() - e.min()) / s <= 8)  # a year's divisors or multiples
        ticks = np.arange(np.ceil(e.min() / step) * step, e.max() + 0.5, step)
        ax.set_xticks(ticks, [event_time_label(t, suffix) for t in ticks])
    ax.set_xlabel(f"{plural} since {since} (0 = {singular} of {since})")


def event_time_label(t: float, suffix: str) -> str:
    """One event-time tick: ``0``, or the signed number and the unit's suffix (``-4 q``, ``+3 q``).

    Parameters
    ----------
    t : float
        Event time, in periods.
    suffix : str
        The unit's suffix (:data:`PERIOD_UNITS`).

    Returns
    -------
    str
    """
    n = int(round(t))
    return "0" if n == 0 else f"{n:+d} {suffix}"
