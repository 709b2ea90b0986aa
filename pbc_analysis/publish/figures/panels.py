"""Data-quality, benchmarking and evaluation panels: tidy DataFrame in, matplotlib Figure out.

Saving is :func:`pbc_analysis.publish.results.save_figure`'s job. Notebooks call these so that no plotting
code is written twice.
"""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display on servers; notebooks still show figures inline

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402

from pbc_analysis.publish.figures.theme import (  # noqa: E402,F401
    PALETTE,
    POD_LABELS,
    event_time_axis,
    readable_log_axis,
    set_theme,
)


def _month_axis(months: pd.Series) -> pd.Series:
    return pd.to_datetime(months + "-01")


def monthly_totals_figure(monthly: pd.DataFrame, value: str = "activity") -> plt.Figure:
    """Small multiples: monthly totals per point of delivery (each panel its own scale)."""
    df = monthly.assign(date=_month_axis(monthly["month"]), series=monthly["pod"].map(POD_LABELS).fillna(monthly["pod"]))
    order = [POD_LABELS[p] for p in POD_LABELS if POD_LABELS[p] in set(df["series"])]
    g = sns.relplot(data=df, x="date", y=value, col="series", col_order=order, col_wrap=3, kind="line",
                    height=2.4, aspect=1.5, facet_kws={"sharey": False}, color=sns.color_palette(PALETTE)[0])
    g.set_titles("{col_name}")
    g.set_axis_labels("", "per month")
    for ax in g.axes.flat:
        ax.tick_params(axis="x", labelrotation=45)
        ax.set_ylim(bottom=0)
    g.figure.tight_layout()
    return g.figure


def completeness_figure(comp: pd.DataFrame, threshold: float) -> plt.Figure:
    """Completeness ratio of the latest months with intervals, one line per point of delivery."""
    df = comp.assign(series=comp["pod"].map(POD_LABELS).fillna(comp["pod"]))
    fig, ax = plt.subplots(figsize=(8, 3.6))
    months = sorted(df["month"].unique())
    xpos = {m: i for i, m in enumerate(months)}
    series = list(dict.fromkeys(df.sort_values("pod")["series"]))
    offsets = np.linspace(-0.25, 0.25, len(series)) if len(series) > 1 else [0.0]
    for off, (name, colour) in zip(offsets, zip(series, sns.color_palette(PALETTE, len(series)))):
        s = df[df["series"] == name]
        x = s["month"].map(xpos).to_numpy() + off
        hi = np.minimum(s["ci_high"].to_numpy(), 2.0)
        ax.errorbar(x, s["completeness"], yerr=[s["completeness"] - s["ci_low"], hi - s["completeness"]],
                    fmt="o", ms=4, capsize=2, color=colour, label=name)
    ax.axhline(1, color="0.3", lw=1)
    ax.axhline(threshold, color="0.3", lw=1, ls="--", label=f"threshold {threshold:.0%}")
    ax.set_xticks(range(len(months)), months, rotation=45)
    ax.set_ylabel("observed / expected")
    ax.set_ylim(0, max(1.3, float(np.nanmax(np.minimum(df["ci_high"], 2.0))) + 0.05))
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def list_vs_rate_figure(consistency: pd.DataFrame) -> plt.Figure:
    """Practice list size against activity per 1,000 patients; flagged practices labelled."""
    fig, ax = plt.subplots(figsize=(7, 4))
    flagged = consistency["flag"] != ""
    ax.scatter(consistency["list_last_month"], consistency["activity_per_1000_per_year"], s=18,
               color=sns.color_palette(PALETTE)[0], label="practice")
    if flagged.any():
        f = consistency[flagged]
        ax.scatter(f["list_last_month"], f["activity_per_1000_per_year"], s=40, facecolors="none",
                   edgecolors=sns.color_palette(PALETTE)[3], label="flagged")
        for _, r in f.iterrows():
            ax.annotate(r["practice_code"], (r["list_last_month"], r["activity_per_1000_per_year"]),
                        xytext=(4, 4), textcoords="offset points", fontsize="x-small")
    ax.set_xlabel("registered list (latest month)")
    ax.set_ylabel("hospital activity per 1,000 per year")
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def heatmap_figure(table: pd.DataFrame, index: str, columns: str, value: str, fmt: str = ".0f",
                   label: str | None = None) -> plt.Figure:
    """A heatmap of ``value`` by ``index`` x ``columns`` (e.g. cost by specialty and year)."""
    wide = table.pivot_table(index=index, columns=columns, values=value, aggfunc="sum", observed=True)
    fig, ax = plt.subplots(figsize=(1.3 + 0.9 * wide.shape[1], 0.6 + 0.35 * wide.shape[0]))
    sns.heatmap(wide, annot=True, fmt=fmt, cmap="viridis", cbar_kws={"label": label or value}, ax=ax,
                annot_kws={"fontsize": "x-small"})
    ax.set_xlabel(columns.replace("_", " "))
    ax.set_ylabel(index.replace("_", " "))
    fig.tight_layout()
    return fig


MEASURE_LABELS = {"referrals": "GP referrals", **{k: v for k, v in POD_LABELS.items() if k != "gp_referral"}}


def decile_fan_figure(fan: pd.DataFrame, highlight: pd.DataFrame | None = None, value_label: str = "standardised ratio",
                      title: str | None = None) -> plt.Figure:
    """OpenPrescribing-style decile chart: the median (solid), the 10th-90th percentiles (dashed) and
    the deciles between (dotted) of practices' values per period, with chosen practices' own lines.

    ``fan``: one series' :func:`pbc_analysis.stages.benchmark.decile_fan` rows (``period``, ``percentile``,
    ``value``); ``highlight``: rows ``period``, ``practice_code``, ``value`` for the practices to draw.
    Periods that are months (``YYYY-MM``) are drawn on a date axis.
    """
    fig, ax = plt.subplots(figsize=(8, 3.6))
    periods = sorted(fan["period"].unique())
    is_month = all(len(p) == 7 and p[4] == "-" for p in periods)
    xmap = dict(zip(periods, pd.to_datetime([p + "-01" for p in periods]) if is_month else range(len(periods))))
    blue = sns.color_palette(PALETTE)[0]
    for pct, g in fan.groupby("percentile"):
        g = g.sort_values("period")
        style = "-" if pct == 50 else ("--" if pct in (10, 90) else ":")
        ax.plot([xmap[p] for p in g["period"]], g["value"], style, color=blue, lw=1.6 if pct == 50 else 1.0,
                label={50: "median", 10: "10th / 90th percentile", 20: "deciles"}.get(int(pct)))
    if highlight is not None and len(highlight):
        colours = sns.color_palette(PALETTE)[1:]
        for (code, g), c in zip(highlight.groupby("practice_code"), colours):
            g = g.sort_values("period")
            ax.plot([xmap[p] for p in g["period"]], g["value"], "-", color=c, lw=1.6, label=code)
    if not is_month:
        ax.set_xticks(range(len(periods)), periods)
    ax.axhline(1.0, color="0.5", lw=0.8)
    ax.set_ylabel(value_label)
    if title:
        ax.set_title(title, fontsize="medium")
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def funnel_grid_figure(units: pd.DataFrame, lines: pd.DataFrame, panel: str = "panel", ncols: int = 4,
                       max_labels: int = 4) -> plt.Figure:
    """Small multiples of funnel plots of standardised ratios, one panel per value of ``panel``.

    ``units``: ``panel``, ``practice_code``, ``expected``, ``ratio``, ``position`` (from
    :func:`pbc_analysis.stages.benchmark.funnel_table`); ``lines``: ``panel``, ``denominator`` (expected
    count), ``target``, ``lower95``, ``upper95``, ``lower998``, ``upper998``. Points beyond the
    99.8% limits are labelled with the practice code (the furthest first, at most ``max_labels``).

    The legend explains every line and colour: the target, the 95% and 99.8% limits, practices within the 95%
    limits, outside the 95% limits only (above or below), and outside the 99.8% limits (above or below). The
    expected-count axis is logarithmic, its ticks plain numbers at 1, 2 and 5 times powers of ten
    (:func:`~pbc_analysis.publish.figures.theme.readable_log_axis`).
    """
    panels = list(dict.fromkeys(units[panel]))
    ncols = min(ncols, len(panels))
    nrows = int(np.ceil(len(panels) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.1 * ncols, 2.6 * nrows), squeeze=False, sharey=False)
    pal = sns.color_palette(PALETTE)
    colour = {"within": pal[0], "above 95%": pal[1], "below 95%": pal[1], "above 99.8%": pal[3], "below 99.8%": pal[3]}
    for ax, name in zip(axes.flat, panels):
        u = units[units[panel] == name]
        ln = lines[lines[panel] == name].sort_values("denominator")
        x = ln["denominator"].to_numpy(float)
        ax.plot(x, ln["target"], color="0.3", lw=1, label="target (observed = expected)")
        ax.plot(x, ln["lower95"], "--", color="0.45", lw=0.9)
        ax.plot(x, ln["upper95"], "--", color="0.45", lw=0.9, label="95% limits")
        ax.plot(x, ln["lower998"], ":", color="0.2", lw=1.1)
        ax.plot(x, ln["upper998"], ":", color="0.2", lw=1.1, label="99.8% limits")
        ax.scatter(u["expected"], u["ratio"], s=12, c=[colour.get(p, pal[7]) for p in u["position"]], zorder=3)
        out = u[u["position"].isin(["above 99.8%", "below 99.8%"])]
        out = out.assign(dist=(np.log(out["ratio"].clip(lower=1e-9))).abs()).sort_values("dist", ascending=False)
        for _, r in out.head(max_labels).iterrows():
            ax.annotate(str(r["practice_code"]), (r["expected"], r["ratio"]), xytext=(3, 3), textcoords="offset points",
                        fontsize="xx-small")
        ax.set_xscale("log")
        ax.set_title(str(name), fontsize="small")
        lo = float(np.nanmin([u["ratio"].min(), ln["lower998"].min()]))
        hi = float(np.nanmax([u["ratio"].max(), ln["upper998"].max()]))
        ax.set_ylim(max(0.0, lo - 0.05), hi + 0.05)
        readable_log_axis(ax, "x")
        ax.tick_params(labelsize="x-small")
    for ax in list(axes.flat)[len(panels):]:
        ax.set_visible(False)
    for ax in axes[:, 0]:
        ax.set_ylabel("observed / expected", fontsize="small")
    for ax in axes[-1, :]:
        ax.set_xlabel("expected count (log scale)", fontsize="small")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for text, key in (("within 95% limits", "within"), ("outside 95% limits (above or below)", "above 95%"),
                      ("outside 99.8% limits (above or below)", "above 99.8%")):
        handles.append(Line2D([], [], ls="", marker="o", ms=5, color=colour[key]))
        labels.append(text)
    fig.legend(handles, labels, loc="upper center", ncol=3, frameon=False, fontsize="small", bbox_to_anchor=(0.5, 1.0))
    fig.tight_layout(rect=(0, 0, 1, 1 - min(0.16, 0.55 / fig.get_figheight())))
    return fig


def event_study_grid_figure(event_study: Any, names: dict[str, str] | None = None, ncols: int = 4,
                            ylabel: str = "effect on rate per 1,000/yr", xlabel: str | None = None,
                            period_months: int | None = None) -> plt.Figure:
    """Small multiples of event studies, one panel per specialty, with event time labelled in its unit.

    Pre-engagement estimates are in the palette's first colour, post-engagement ones in its second, with a zero
    line and a dashed line at engagement; y axes are free (specialties differ in rate). The x ticks say the
    unit (``-4 q``, ``0``, ``+4 q`` for quarters) and the figure's x label reads "quarters since engagement (0 =
    quarter of engagement)" (:func:`~pbc_analysis.publish.figures.theme.event_time_axis`).

    Parameters
    ----------
    event_study : pandas.DataFrame or DiDEvaluation
        Columns ``specialty_code, event_time, estimate, ci_low, ci_high`` (the ``ev_event_study`` table), or the
        :class:`~pbc_analysis.stages.evaluation.effects.DiDEvaluation` holding it (whose ``period_months`` is
        then used).
    names : dict of str to str, optional
        Panel titles by specialty code.
    ncols : int
        Panels per row.
    ylabel : str
        The y axis label.
    xlabel : str, optional
        Overrides the x axis label.
    period_months : int, optional
        Months per event-time period. Default: the ``DiDEvaluation``'s, else ``event_study.attrs["period_months"]``,
        else the evaluation stage's default (3: quarters). Pass the run's setting when the table alone is given.

    Returns
    -------
    matplotlib.figure.Figure

    References
    ----------
    Callaway B, Sant'Anna PHC (2021), J Econometrics 225:200-230.
    """
    if not isinstance(event_study, pd.DataFrame):
        period_months = period_months if period_months is not None else getattr(event_study, "period_months", None)
        event_study = event_study.event_study
    if period_months is None:
        period_months = event_study.attrs.get("period_months")
    if period_months is None:
        from pbc_analysis.stages.evaluation.params import Params as _EvaluationParams

        period_months = int(_EvaluationParams().period_months)
    set_theme()
    colours = sns.color_palette(PALETTE)
    specs = list(pd.unique(event_study["specialty_code"]))
    nrows = -(-len(specs) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.2 * ncols, 2.5 * nrows), squeeze=False)
    for ax in axes.ravel()[len(specs):]:
        ax.set_visible(False)
    for ax, spec in zip(axes.ravel(), specs):
        t = event_study[event_study["specialty_code"] == spec]
        e = t["event_time"].to_numpy(dtype=float)
        est, lo, hi = (t[c].to_numpy(dtype=float) for c in ("estimate", "ci_low", "ci_high"))
        ax.axhline(0, color="0.3", lw=0.8)
        ax.axvline(-0.5, color="0.6", ls="--", lw=0.8)
        for mask, colour in ((e < 0, colours[0]), (e >= 0, colours[1])):
            ax.errorbar(e[mask], est[mask], yerr=np.vstack([est[mask] - lo[mask], hi[mask] - est[mask]]), fmt="o",
                        ms=3, color=colour, ecolor=colour, lw=1, capsize=0)
        ax.set_title((names or {}).get(spec, "All specialties" if spec == "all" else spec), fontsize="small")
        event_time_axis(ax, e, int(period_months))
        ax.tick_params(labelsize="x-small")
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize="small")
    shown = [ax for ax in axes.ravel() if ax.get_visible()]
    label = xlabel if xlabel is not None else (shown[0].get_xlabel() if shown else "")
    for ax in shown:  # one x label for the figure, under the panels: the ticks carry the unit
        ax.set_xlabel("")
    fig.supxlabel(label, fontsize="small")
    fig.tight_layout()
    return fig


def forest_figure(table: pd.DataFrame, label: str, estimate: str, low: str, high: str, truth: str | None = None,
                  xlabel: str = "", reference: float = 0.0, percent: bool = True) -> plt.Figure:
    """Forest plot: one row per ``label`` with the estimate and its interval, a reference line, and (when
    ``truth`` names a column, e.g. the planted effect of a synthetic PCT) the true value as a cross."""
    set_theme()
    colours = sns.color_palette(PALETTE)
    t = table.reset_index(drop=True)
    y = np.arange(len(t))[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(t) + 1.2))
    ax.axvline(reference, color="0.3", lw=0.8)
    ax.errorbar(t[estimate], y, xerr=np.vstack([t[estimate] - t[low], t[high] - t[estimate]]), fmt="o",
                color=colours[0], ecolor=colours[0], capsize=3, lw=1.4, label="estimate (95% CI)")
    if truth is not None:
        ax.scatter(t[truth], y, marker="x", color=colours[3], s=40, zorder=4, label="planted truth")
    ax.set_yticks(y)
    ax.set_yticklabels(t[label])
    ax.set_xlabel(xlabel)
    if percent:
        ax.xaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.legend(frameon=False, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, fontsize="small")
    fig.tight_layout()
    return fig
