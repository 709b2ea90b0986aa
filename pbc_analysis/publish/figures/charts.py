"""Charts of the methods: funnel plots, SPC charts, interrupted time series and event studies.

Each takes a method's result (:mod:`pbc_analysis.methods`) and returns a matplotlib Axes or Figure; none
computes anything the method did not.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; notebooks still show figures inline

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

from pbc_analysis.methods.did import AggregateResult  # noqa: E402
from pbc_analysis.methods.funnel import funnel_lines  # noqa: E402
from pbc_analysis.methods.its import ITSResult  # noqa: E402
from pbc_analysis.methods.spc import IMPROVEMENT as _SPC_DIRECTION  # noqa: E402
from pbc_analysis.methods.spc import POINT_TYPES  # noqa: E402
from pbc_analysis.publish.figures.theme import (  # noqa: E402
    PALETTE,
    event_time_axis,
    plain_number,
    readable_log_axis,
    set_theme,
)


def plot_funnel(units: pd.DataFrame, limits: pd.DataFrame, *, x: str = "denominator", y: str = "value",
                label: str | None = "group", outlier: str | None = "outlier", target: float | None = None,
                title: str | None = None, xlabel: str = "Expected count (precision)",
                ylabel: str = "Indicator", caption: str | None = None, log_x: bool = False,
                max_labels: int | None = 25, figsize: tuple[float, float] = (7.5, 4.8)) -> Any:
    """Funnel plot: units, target line, 95% and 99.8% limits, outliers labelled.

    ``units`` needs columns ``x`` and ``y`` (defaults suit :attr:`FunnelResult.units`); ``limits`` is
    any table :func:`funnel_lines` accepts (PHE tables or :attr:`FunnelResult.limits`, whose lines are
    the adjusted ones when an adjustment was used). ``target`` defaults to the limits table's
    ``baseline``/``target`` column.

    Points are coloured in three groups: inside the 95% limits; outside them only (FunnelPlotR-style
    ``signif95`` column, or a PHE ``significance`` other than "Not significant"); and outliers (the
    ``outlier`` column, or PHE's "(0.001)" levels), which are labelled from ``label`` -- the
    ``max_labels`` furthest from the target when there are more. The y-axis spans the units and the
    target (limits for tiny denominators run off it). The x axis reads in plain numbers with thousands
    separators; with ``log_x`` its ticks are at 1, 2 and 5 times powers of ten, never ``10^x``. Deterministic:
    no timestamps, fixed theme. Returns the matplotlib Figure.
    """

    set_theme()
    for col in (x, y):
        if col not in units.columns:
            raise ValueError(f"units has no column {col!r}")
    palette = sns.color_palette(PALETTE)
    lines = funnel_lines(limits)
    if target is None:
        for col in ("baseline", "target"):
            if col in limits.columns:
                target = float(limits[col].iloc[0])
                break

    n = len(units)
    if outlier is not None and outlier in units.columns:
        out = units[outlier].astype(bool).to_numpy()
        near = (units["signif95"] != "none").to_numpy() if "signif95" in units.columns else out
    elif "significance" in units.columns:
        sig = units["significance"].astype(str)
        out = sig.str.contains("(0.001)", regex=False).to_numpy()
        near = (sig.str.startswith("High") | sig.str.startswith("Low")).to_numpy()
    else:
        out = near = np.zeros(n, dtype=bool)
    near = near & ~out

    fig, ax = plt.subplots(figsize=figsize)
    styles = {"95%": (palette[0], "--"), "99.8%": (palette[2], "-")}
    for (level, bound), seg in lines.groupby(["level", "bound"], sort=False):
        seg = seg.sort_values("x")
        colour, ls = styles[level]
        ax.plot(seg["x"], seg["value"], color=colour, ls=ls, lw=1.2,
                label=f"{level} limits" if bound == "lower" else None)
    if target is not None:
        ax.axhline(target, color="0.3", lw=1, label="target")
    xs, ys = units[x].to_numpy(dtype=float), units[y].to_numpy(dtype=float)
    inside = ~(near | out)
    ax.scatter(xs[inside], ys[inside], s=18, color=palette[7 % len(palette)], zorder=3, label="unit")
    if near.any():
        ax.scatter(xs[near], ys[near], s=22, color=palette[1], zorder=4, label="outside 95% limits")
    if out.any():
        ax.scatter(xs[out], ys[out], s=30, color=palette[3], zorder=5, label="outlier")
        if label is not None and label in units.columns:
            idx = np.flatnonzero(out)
            centre = target if target is not None else float(np.nanmedian(ys))
            idx = idx[np.argsort(-np.abs(ys[idx] - centre), kind="stable")][:max_labels]
            names = units[label].astype(str).to_numpy()
            for i in sorted(idx):  # only the few labelled outliers are annotated one by one
                ax.annotate(names[i], (xs[i], ys[i]), xytext=(4, 4), textcoords="offset points",
                            fontsize="x-small")
    ax.set_xlim(left=None if log_x else 0, right=float(np.nanmax(xs)) * 1.05)
    span = np.concatenate([ys[np.isfinite(ys)], [] if target is None else [target]])
    lo, hi = float(span.min()), float(span.max())
    pad = 0.1 * (hi - lo) if hi > lo else 0.1 * (abs(hi) or 1.0)
    ax.set_ylim(lo - pad, hi + pad)
    if log_x:
        ax.set_xscale("log")
        readable_log_axis(ax, "x")
    else:
        ax.xaxis.set_major_formatter(mt.FuncFormatter(plain_number))  # 20,000, not 20000 or 2e4
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if caption:
        fig.text(0.01, 0.01, caption, fontsize="x-small", ha="left", va="bottom")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.tight_layout(rect=(0, 0.04 if caption else 0, 1, 1))
    return fig


def _plot_x(t: pd.Series) -> tuple[np.ndarray, list[str] | None]:
    if pd.api.types.is_datetime64_any_dtype(t):
        return t.to_numpy(), None
    if isinstance(t.dtype, pd.PeriodDtype):
        return t.dt.to_timestamp().to_numpy(), None
    if pd.api.types.is_numeric_dtype(t):
        return t.to_numpy(), None
    try:
        return pd.to_datetime(t.astype(str), format="%Y-%m").to_numpy(), None
    except (ValueError, TypeError):
        pass
    try:
        return pd.to_datetime(t.astype(str), format="%Y-%m-%d").to_numpy(), None
    except (ValueError, TypeError):
        return np.arange(len(t)), [str(v) for v in t]


def plot_spc(result: pd.DataFrame, series: Any = None, ax: Any = None, title: str | None = None,
             ylabel: str | None = None, show_icons: bool = True, labels: str = "direction"):
    """Making Data Count style chart of one series of an :func:`xmr`, :func:`u_chart` or :func:`p_chart` result.

    Points are grey for common cause, orange for special cause concern, blue for improvement and purple for
    special cause with no improvement direction (MDC colours, from the project palette); the mean is a solid
    line, the process limits dashed (stepped for u and p charts), a target dash-dotted; each segment is drawn
    separately so rebasing shows as a break. The variation and assurance icons of the last segment are written
    beside the plot, above the legend. The y axis reads in plain numbers (thousands separators, no offset or
    exponent). Deterministic for the same input.

    Parameters
    ----------
    result : pandas.DataFrame
        An :func:`xmr`, :func:`u_chart` or :func:`p_chart` result (with its ``attrs["spc"]``).
    series : object, optional
        The series to draw when ``result`` holds several (the ``by`` value, a tuple for several ``by`` columns).
    ax : matplotlib.axes.Axes, optional
        Where to draw (default: a new figure).
    title, ylabel : str, optional
        Title and y label (default y label: the value column's name).
    show_icons : bool
        Write the variation and assurance icons beside the plot.
    labels : {"direction", "improvement"}
        How special causes are named in the legend and the variation text. ``"direction"`` (default): by the
        side of the mean they fall on, "Special cause: higher" / "Special cause: lower", for measures whose
        better direction a reader should not infer (a low referral ratio may be under-referral, not
        improvement). ``"improvement"``: Making Data Count's "improvement" / "concern", for measures where
        one direction is plainly better. The colours are the same either way.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    NHS England (2019), Making Data Count: strengthening your decisions; NHS-R Community, NHSRplotthedots.
    """
    if labels not in ("direction", "improvement"):
        raise ValueError(f"plot_spc: labels must be 'direction' or 'improvement', not {labels!r}")

    meta = result.attrs.get("spc")
    if not meta:
        raise ValueError("plot_spc: result has no SPC settings in .attrs['spc']; pass the DataFrame returned by "
                         "xmr, u_chart or p_chart")
    by, time, value = meta["by"], meta["time"], meta["value"]
    df = result
    if by:
        if series is None:
            nser = len(df[by].drop_duplicates())
            if nser > 1:
                raise ValueError(f"plot_spc: result holds {nser} series; pass series= one value of {by}")
        else:
            key = series if isinstance(series, tuple) else (series,)
            if len(key) != len(by):
                raise ValueError(f"plot_spc: series must give one value per by column {by}, got {series!r}")
            mask = np.ones(len(df), bool)
            for c, k in zip(by, key):
                mask &= (df[c] == k).to_numpy()
            df = df[mask]
            if df.empty:
                raise ValueError(f"plot_spc: series {series!r} is not in the result")
    df = df.reset_index(drop=True)
    pal = sns.color_palette(PALETTE)
    colours = {"common_cause": pal[7], "special_cause_concern": pal[1], "special_cause_improvement": pal[0],
               "special_cause_neutral_high": pal[4], "special_cause_neutral_low": pal[4]}
    names = _spc_point_names(str(meta.get("improvement", "neither")), labels)
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 3.6))
    else:
        fig = ax.figure
    x, ticklabels = _plot_x(df[time])
    y = df[value].to_numpy(dtype=float)
    ax.plot(x, y, color=pal[7], lw=1.2, zorder=2)
    step = "steps-mid" if meta["chart"] != "xmr" else "default"
    for k, seg in enumerate(df["segment"].unique()):
        rows = (df["segment"] == seg).to_numpy()
        xs = x[rows]
        ax.plot(xs, df.loc[rows, "mean"], color="0.15", lw=1.3, zorder=3, label="mean" if k == 0 else None)
        ax.plot(xs, df.loc[rows, "upl"], color="0.35", lw=1.1, ls="--", drawstyle=step, zorder=3,
                label="process limits" if k == 0 else None)
        ax.plot(xs, df.loc[rows, "lpl"], color="0.35", lw=1.1, ls="--", drawstyle=step, zorder=3)
    tg = df["target"].to_numpy(dtype=float)
    if np.isfinite(tg).any():
        ax.axhline(float(tg[np.isfinite(tg)][0]), color=pal[2], lw=1.4, ls="-.", zorder=3, label="target")
    seen: set[str] = set()
    for pt in POINT_TYPES:
        rows = (df["point_type"] == pt).to_numpy()
        if rows.any():
            label = names[pt] if names[pt] not in seen else None
            seen.add(names[pt])
            ax.scatter(x[rows], y[rows], s=26, color=colours[pt], edgecolors="white", linewidths=0.5, zorder=4,
                       label=label)
    if ticklabels is not None:
        every = max(1, len(ticklabels) // 12)
        ax.set_xticks(x[::every], ticklabels[::every], rotation=45)
    else:
        ax.tick_params(axis="x", labelrotation=45)
    if show_icons:
        lastrow = df.iloc[-1]
        text = f"Variation: {_spc_variation_text(str(lastrow['variation_icon']), labels)}"
        if isinstance(lastrow["assurance_icon"], str):
            text += f"\nAssurance: {lastrow['assurance_icon']}"
        ax.text(1.02, 1.0, text, transform=ax.transAxes, ha="left", va="top", fontsize="small",
                bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "0.7"})
    ax.set_ylabel(ylabel if ylabel is not None else value.replace("_", " "))
    ax.yaxis.set_major_formatter(mt.FuncFormatter(plain_number))  # 2,600,000, not 2.6 and a "1e6" offset
    ax.set_xlabel("")
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 0.78 if show_icons else 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def _spc_point_names(improvement: str, labels: str) -> dict[str, str]:
    """Legend names of the SPC point types: by side of the mean ("higher"/"lower") or MDC's improvement/concern."""
    if labels == "improvement":
        return {"common_cause": "Common cause", "special_cause_concern": "Special cause: concern",
                "special_cause_improvement": "Special cause: improvement",
                "special_cause_neutral_high": "Special cause: neither", "special_cause_neutral_low": "Special cause: neither"}
    up = _SPC_DIRECTION.get(improvement, 0) >= 0  # an improvement is a rise (or there is no direction)
    return {"common_cause": "Common cause",
            "special_cause_improvement": "Special cause: higher" if up else "Special cause: lower",
            "special_cause_concern": "Special cause: lower" if up else "Special cause: higher",
            "special_cause_neutral_high": "Special cause: higher", "special_cause_neutral_low": "Special cause: lower"}


def _spc_variation_text(icon: str, labels: str) -> str:
    """The variation icon in words; with ``labels="direction"`` "special cause, higher/lower", never improvement."""
    if labels == "improvement" or icon == "common cause":
        return icon
    return "special cause, higher" if icon.endswith("high") else "special cause, lower" if icon.endswith("low") else icon


def plot_its(result: ITSResult, per: float | None = None, ax: Any = None, title: str | None = None,
             xlabel: str = "time", ylabel: str | None = None, figsize: tuple[float, float] = (8.0, 4.0)) -> Any:
    """Counterfactual plot: observed points, fitted line, dashed counterfactual with its interval band over
    the post period, and a vertical line at the interruption (midway between the last pre and first post
    times), as the tutorial's figures (Lopez Bernal et al. 2017). ``per`` plots rates per ``per``
    population (``count / population * per``) instead of counts. A controlled fit shows both series (the
    comparison in the palette's second colour). Project theme (:func:`pbc_analysis.publish.plots.set_theme`);
    deterministic for the same input. Returns the matplotlib Figure.
    """

    set_theme()
    pal = sns.color_palette(PALETTE)
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize)
    else:
        fig = ax.figure
    f = result.fitted
    scale = (per / f["population"].to_numpy()) if per is not None else np.ones(len(f))
    cols = ["observed", "fitted", "counterfactual", "counterfactual_low", "counterfactual_high"]
    v = {c: f[c].to_numpy(dtype=float) * scale for c in cols}
    t = f["time"].to_numpy(dtype=float)
    series: list[tuple[Any, Any, str | None, bool]]
    if result.controlled:
        series = [(f["treated"].to_numpy(dtype=bool), pal[0], f"{f.loc[f['treated'], 'group'].iloc[0]}", True),
                  (~f["treated"].to_numpy(dtype=bool), pal[1], f"{f.loc[~f['treated'], 'group'].iloc[0]}", False)]
    else:
        series = [(np.ones(len(f), dtype=bool), pal[0], None, True)]
    t0, t1 = result.last_pre_time, result.first_post_time
    for rows, colour, name, treated in series:
        prefix = f"{name}: " if name is not None else ""
        ax.scatter(t[rows], v["observed"][rows], s=16, color=colour, alpha=0.7, zorder=3,
                   label=f"{prefix}observed")
        ax.plot(t[rows], v["fitted"][rows], color=colour, lw=1.6, zorder=4, label=f"{prefix}fitted")
        if treated:
            cf = rows & (t >= t0)  # from the last pre point so the dashed line leaves the fitted line
            ax.plot(t[cf], v["counterfactual"][cf], color=colour, lw=1.4, ls="--", zorder=4,
                    label=f"{prefix}counterfactual")
            ax.fill_between(t[cf], v["counterfactual_low"][cf], v["counterfactual_high"][cf], color=colour,
                            alpha=0.15, lw=0, zorder=2, label=f"{prefix}counterfactual {result.confidence:.0%} CI")
    ax.axvline((t0 + t1) / 2, color="0.3", lw=1, ls=":", zorder=1, label="interruption")
    ax.set_xlabel(xlabel)
    if ylabel is None:
        ylabel = result.outcome.replace("_", " ") + (f" per {per:,.0f}" if per is not None else "")
    ax.set_ylabel(ylabel)
    ax.set_ylim(bottom=0)
    if title:
        ax.set_title(title)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def plot_event_study(agg_dynamic: AggregateResult, ax=None, title: str | None = None,
                     ylabel: str = "ATT", xlabel: str | None = None, period_months: int | None = None):
    """Event-study figure of a ``dynamic`` :func:`aggregate`: estimates with their intervals by event
    time, pre-treatment (``e < 0``) and post-treatment in two colours of the project palette, and a zero
    line. Deterministic (no jitter or randomness).

    Parameters
    ----------
    agg_dynamic : AggregateResult
        ``aggregate(..., kind="dynamic")``.
    ax : matplotlib.axes.Axes, optional
        Where to draw.
    title, ylabel : str, optional
        Title (default: the interval level and kind) and y label.
    xlabel : str, optional
        The x label (default: "Periods since first treated", or the unit's words with ``period_months``).
    period_months : int, optional
        Months per period: when given, ticks and axis say the unit (``-4 q``, ``0``, ``+4 q``; "quarters since
        first treated"), as :func:`~pbc_analysis.publish.figures.theme.event_time_axis`.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    if not isinstance(agg_dynamic, AggregateResult) or agg_dynamic.kind != "dynamic":
        raise ValueError("plot_event_study needs the result of aggregate(..., kind='dynamic')")


    set_theme()
    colours = sns.color_palette(PALETTE)
    tab = agg_dynamic.table
    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4))
    else:
        fig = ax.figure
    e = tab["event_time"].to_numpy(dtype=float)
    est = tab["estimate"].to_numpy(dtype=float)
    lo, hi = tab["ci_low"].to_numpy(dtype=float), tab["ci_high"].to_numpy(dtype=float)
    ax.axhline(0, color="0.3", lw=1, zorder=1)
    for mask, colour, label in ((e < 0, colours[0], "Pre-treatment"), (e >= 0, colours[1], "Post-treatment")):
        if mask.any():
            ax.errorbar(e[mask], est[mask], yerr=np.vstack([est[mask] - lo[mask], hi[mask] - est[mask]]),
                        fmt="o", color=colour, ecolor=colour, capsize=3, lw=1.5, label=label, zorder=3)
    ax.axvline(-0.5, color="0.6", ls="--", lw=1, zorder=0)
    if period_months is not None:
        event_time_axis(ax, e, int(period_months), since="first treated")
    elif e.size:
        ax.set_xticks(np.unique(e))
    if xlabel is not None or period_months is None:
        ax.set_xlabel(xlabel if xlabel is not None else "Periods since first treated")
    ax.set_ylabel(ylabel)
    level = int(round(100 * (1 - 2 * stats.norm.sf(agg_dynamic.crit_val))))
    band = "simultaneous" if agg_dynamic.crit_val > stats.norm.ppf(0.975) + 1e-9 else "pointwise"
    ax.set_title(title if title is not None else f"Event study ({level}% {band} intervals)")
    ax.legend(frameon=False, loc="best")
    fig.tight_layout()
    return fig
