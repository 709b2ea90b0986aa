"""Figures of the stages: the savings waterfall, budget distance and glide path, the risk pool and monitoring.

Each takes a stage's result table or object and returns a matplotlib Figure; none recomputes the stage.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # no display on servers; notebooks still show figures inline

import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker as mt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from pbc_analysis.publish.figures.theme import PALETTE, set_theme  # noqa: E402
from pbc_analysis.stages.attribution import LEDGER_LINES, LINE_LABELS  # noqa: E402
from pbc_analysis.stages.risk import Monitoring, RiskResult  # noqa: E402


def waterfall_figure(ledger_table: pd.DataFrame, year: str, level: str = "pct", unit: str = "PCT",
                     title: str | None = None):
    """Waterfall of the change in spend from the base year to ``year`` for one ledger row: base spend,
    each line of :data:`LEDGER_LINES` with its interval, spend in ``year``. Returns the Figure."""


    row = ledger_table[(ledger_table["level"] == level) & (ledger_table["unit"] == unit)
                       & (ledger_table["financial_year"] == year)]
    if row.empty:
        raise ValueError(f"no ledger row for level {level!r}, unit {unit!r}, year {year!r}; years are "
                         f"{sorted(set(ledger_table['financial_year']))}")
    r = row.iloc[0]
    set_theme()
    col = sns.color_palette(PALETTE)
    labels = [f"Spend {r['base_year']}"] + [LINE_LABELS[k] for k in LEDGER_LINES] + [f"Spend {year}"]
    vals = [float(r[k]) for k in LEDGER_LINES]
    scale = 1e6
    fig, ax = plt.subplots(figsize=(9, 4.8))
    level0 = float(r["spend_base"])
    ax.bar(0, level0 / scale, color="0.6", width=0.6)
    running = level0
    for i, (k, v) in enumerate(zip(LEDGER_LINES, vals), start=1):
        bottom = running if v >= 0 else running + v
        ax.bar(i, abs(v) / scale, bottom=bottom / scale, color=col[3] if v >= 0 else col[2], width=0.6)
        lo, hi = r.get(f"{k}_ci_low", np.nan), r.get(f"{k}_ci_high", np.nan)
        if np.isfinite(lo) and np.isfinite(hi):
            ax.errorbar(i, (running + v) / scale, yerr=[[max(v - lo, 0) / scale], [max(hi - v, 0) / scale]],
                        fmt="none", ecolor="0.15", capsize=4, lw=1.2)
        ax.plot([i - 0.3, i + 1.3], [(running + v) / scale] * 2, color="0.4", lw=0.6, ls=":")
        top = max(running, running + v, (running + hi) if np.isfinite(hi) else -np.inf)
        ax.annotate(f"{v / scale:+.2f}", (i, top / scale), textcoords="offset points", xytext=(0, 3), ha="center",
                    fontsize=8)
        running += v
    ax.bar(len(labels) - 1, float(r["spend"]) / scale, color="0.35", width=0.6)
    lo_y = min(level0, float(r["spend"]), running) / scale
    hi_y = max(level0, float(r["spend"])) / scale
    span = max(hi_y - lo_y, 1e-9)
    ax.set_ylim(lo_y - 0.6 * span - 0.05 * hi_y, hi_y + 0.25 * span)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("GBP million")
    ax.set_title(title or f"{unit}: change in hospital spend, {r['base_year']} to {year} (bars: 95% intervals)")
    fig.tight_layout()
    return fig


def distance_figure(statement: pd.DataFrame, band: float):
    """Historic budget (scaled to the envelope) against fair share, one point per practice, with the
    line of equality and the allowed band; colour = this year's status."""


    set_theme()

    pal = sns.color_palette(PALETTE)
    colour = {"gains": pal[0], "loses": pal[3], "unchanged": pal[7]}
    fig, ax = plt.subplots(figsize=(6.5, 4.6))
    x = statement["fair_share"].to_numpy(float) / 1e6
    y = statement["historic_at_envelope"].to_numpy(float) / 1e6
    grid = np.linspace(0, max(x.max(), y.max()) * 1.05, 50)
    ax.plot(grid, grid, color="0.3", lw=1, label="historic = fair share")
    ax.plot(grid, grid * (1 + band), color="0.5", lw=0.9, ls="--", label=f"band +/-{band:.0%}")
    ax.plot(grid, grid * (1 - band), color="0.5", lw=0.9, ls="--")
    for st in ("gains", "loses", "unchanged"):
        m = (statement["status"] == st).to_numpy()
        if m.any():
            ax.scatter(x[m], y[m], s=22, color=colour[st], label=f"{st} this year", zorder=3)
    far = statement.assign(a=statement["distance_from_target"].abs()).nlargest(4, "a")
    for r in far.itertuples():
        ax.annotate(r.practice_code, (r.fair_share / 1e6, r.historic_at_envelope / 1e6), xytext=(3, 3),
                    textcoords="offset points", fontsize="x-small")
    ax.set_xlabel("fair share (GBP million)")
    ax.set_ylabel("historic budget at envelope (GBP million)")
    ax.legend(frameon=False, fontsize="small")
    fig.tight_layout()
    return fig


def glide_path_figure(path: pd.DataFrame, band: float):
    """Each practice's distance from target (share / target - 1) over the years of the glide path, with
    the allowed band shaded."""


    set_theme()

    pal = sns.color_palette(PALETTE)
    wide = path.pivot(index="year", columns="practice_code", values="distance")
    labels = path.drop_duplicates("year").set_index("year")["financial_year"].reindex(wide.index)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.axhspan(-band, band, color=pal[2], alpha=0.15, label=f"allowed band +/-{band:.0%}")
    ax.plot(wide.index, wide.to_numpy(), color=pal[0], lw=0.8, alpha=0.7)
    ax.axhline(0, color="0.3", lw=1)
    ax.set_xticks(wide.index, labels.tolist())
    ax.yaxis.set_major_formatter(mt.PercentFormatter(1.0))
    ax.set_ylabel("distance from fair share")
    ax.legend(frameon=False, fontsize="small", loc="upper right")
    fig.tight_layout()
    return fig


def pool_figure(risk: RiskResult):
    """Left: the simulated distribution of the year's pool charge with the pool and the actual charge;
    right: P(pool exhausted) against the top-slice, with the chosen and the smallest adequate top-slice."""


    set_theme()

    pal = sns.color_palette(PALETTE)
    s = risk.settings
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.8))
    a1.hist(risk.totals / 1e6, bins=40, color=pal[0], alpha=0.8, histtype="stepfilled")
    a1.axvline(s["pool"] / 1e6, color=pal[3], lw=1.5, label=f"pool ({s['top_slice']:.1%} top-slice)")
    if s["actual_charge_target_year"] is not None:
        a1.axvline(s["actual_charge_target_year"] / 1e6, color="0.2", lw=1.2, ls="--",
                   label=f"actual {s['target_year']}")
    a1.set_xlabel("pool charge in the year (GBP million)")
    a1.set_ylabel("simulated years")
    a1.legend(frameon=False, fontsize="small")
    ad = risk.adequacy
    a2.plot(ad["top_slice"], ad["probability_exhausted"], color=pal[0])
    a2.axhline(s["max_probability"], color="0.4", lw=0.9, ls=":", label=f"accepted risk {s['max_probability']:.0%}")
    a2.axvline(s["top_slice"], color=pal[3], lw=1.2, label=f"chosen {s['top_slice']:.1%}")
    a2.axvline(s["smallest_top_slice"], color=pal[2], lw=1.2, ls="--", label=f"smallest adequate {s['smallest_top_slice']:.2%}")
    a2.xaxis.set_major_formatter(mt.PercentFormatter(1.0))
    a2.set_xlabel("top-slice of the envelope")
    a2.set_ylabel("P(pool exhausted)")
    a2.legend(frameon=False, fontsize="small", loc="upper right")
    fig.tight_layout()
    return fig


#: the most practices named one by one on the monitoring figure's variance panel
_LABELLED_PRACTICES = 80


def monitoring_figure(mon: Monitoring):
    """Three panels: the PCT's year-to-date cost (adjusted) against the profiled budget; the forecast outturn
    with its interval as it stood after each month, against the annual budget; each practice's forecast
    variance at ``as_at`` with its interval, coloured red / amber / green, each practice named on the axis in its
    colour (the red ones only, beside their intervals, above :data:`_LABELLED_PRACTICES` practices), and the amber
    and red triggers drawn and named."""
    set_theme()

    pal = sns.color_palette(PALETTE)
    rag = {"red": pal[3], "amber": pal[1], "green": pal[2]}
    n = len(mon.status)
    height = max(4.0, 0.1 * n + 1.0) if n <= _LABELLED_PRACTICES else 4.0
    fig, (a0, a1, a2) = plt.subplots(1, 3, figsize=(13, height), gridspec_kw={"width_ratios": [1, 1, 1.2]})
    cm = mon.consortium.assign(half2=((mon.consortium["upper"] - mon.consortium["lower"]) / 2) ** 2)
    pct = cm.groupby("month", sort=True)[["ytd", "profile_budget_ytd", "forecast_centre", "budget", "half2"]].sum()
    half = np.sqrt(pct["half2"])  # consortia independent, as their intervals assume
    x = np.arange(len(pct))
    every = max(1, len(x) // 6)
    a0.plot(x, pct["ytd"] / 1e6, "o-", color=pal[0], ms=3, label="year to date (adjusted)")
    a0.plot(x, pct["profile_budget_ytd"] / 1e6, "--", color="0.4", label="profiled budget")
    a0.set_ylabel("GBP million")
    a0.set_title("year to date", fontsize="medium")
    a0.legend(frameon=False, fontsize="small")
    a1.fill_between(x, (pct["forecast_centre"] - half) / 1e6, (pct["forecast_centre"] + half) / 1e6, color=pal[4],
                    alpha=0.25, label=f"{mon.settings['level']:.0%} interval")
    a1.plot(x, pct["forecast_centre"] / 1e6, "o-", color=pal[4], ms=3, label="forecast outturn")
    a1.axhline(float(pct["budget"].iloc[0]) / 1e6, color="0.2", lw=1, label="annual budget")
    a1.set_title("forecast outturn after each month", fontsize="medium")
    a1.legend(frameon=False, fontsize="small")
    for ax in (a0, a1):
        ax.set_xticks(x[::every], pct.index[::every].tolist(), rotation=45)
    st = mon.status.sort_values("variance").reset_index(drop=True)
    lo = (st["lower"] - st["budget"]) / st["budget"]
    hi = (st["upper"] - st["budget"]) / st["budget"]
    y = np.arange(len(st))
    a2.hlines(y, lo, hi, color="0.6", lw=1.2)
    a2.scatter(st["variance"], y, s=14, c=[rag[s] for s in st["status"]], zorder=3)
    a2.axvline(0, color="0.3", lw=0.9)
    a2.axvline(mon.settings["amber"], color=pal[1], lw=0.9, ls="--", label=f"amber trigger {mon.settings['amber']:.0%}")
    a2.axvline(mon.settings["red"], color=pal[3], lw=0.9, ls="--", label=f"red trigger {mon.settings['red']:.0%}")
    if len(st) <= _LABELLED_PRACTICES:  # every practice named on the axis, in its status colour
        a2.set_yticks(y, st["practice_code"].astype(str).tolist(), fontsize=5.5)
        for tick, status in zip(a2.get_yticklabels(), st["status"]):
            tick.set_color(rag.get(str(status), "0.2"))
        a2.set_ylim(-1, len(st))
    else:  # too many to name: the red practices are labelled beside their intervals
        a2.set_yticks([])
        for i in np.flatnonzero((st["status"] == "red").to_numpy()):
            a2.annotate(str(st["practice_code"].iloc[i]), (float(hi.iloc[i]), float(y[i])), xytext=(3, 0),
                        textcoords="offset points", va="center", fontsize=5.5, color=rag["red"])
    a2.set_ylabel("practices, by forecast variance")
    a2.xaxis.set_major_formatter(mt.PercentFormatter(1.0))
    a2.set_xlabel("forecast variance against budget")
    a2.set_title(f"practices at {mon.settings['as_at']}", fontsize="medium")
    for name, col in rag.items():
        a2.scatter([], [], color=col, label=f"{name} ({int((st['status'] == name).sum())})")
    a2.legend(frameon=False, fontsize="small", loc="lower right")
    fig.tight_layout()
    return fig
