"""The report's figures read correctly: funnel legends and log axes, event time in its unit, SPC wording.

Small synthetic inputs for each rule, and the sample run's own event-study table and settings for the figure the
report shows.
"""

from __future__ import annotations

import json
import re
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from pbc_analysis.methods import funnel, spc  # noqa: E402
from pbc_analysis.publish import figures  # noqa: E402
from pbc_analysis.publish.figures import theme  # noqa: E402

PLAIN = re.compile(r"^-?\d{1,3}(,\d{3})*(\.\d+)?$")  # 2,000 / 500 / 0.5; never 10^3, 1e+03 or mathtext


def _ticklabels(ax, axis: str = "x") -> list[str]:
    ax.figure.canvas.draw()  # tick labels are made at draw time
    ticks = ax.get_xticklabels() if axis == "x" else ax.get_yticklabels()
    lo, hi = sorted(ax.get_xlim() if axis == "x" else ax.get_ylim())
    return [t.get_text() for t, v in zip(ticks, ax.get_xticks() if axis == "x" else ax.get_yticks())
            if lo <= v <= hi and t.get_text()]


def _funnel_panels(expected_max: float = 20_000.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(5)
    expected = np.geomspace(300, expected_max, 40)
    positions = ["within"] * 36 + ["above 95%", "below 95%", "above 99.8%", "below 99.8%"]
    ratio = np.where([p == "within" for p in positions], rng.normal(1, 0.05, 40), [1, 1, 1, 1] * 9 + [1.2, 0.8, 1.5, 0.5])
    units = pd.DataFrame({"panel": ["GP referrals"] * 20 + ["A&E attendances"] * 20, "practice_code": [f"P{i:03d}" for i in range(40)],
                          "expected": np.r_[expected[::2], expected[1::2]], "ratio": ratio, "position": positions[:18] +
                          ["above 99.8%", "below 95%"] + positions[18:36] + ["above 95%", "below 99.8%"]})
    x = np.geomspace(200, expected_max * 1.1, 30)
    half95, half998 = 1.96 / np.sqrt(x), 3.09 / np.sqrt(x)
    one = pd.DataFrame({"denominator": x, "target": 1.0, "lower95": 1 - half95, "upper95": 1 + half95,
                        "lower998": 1 - half998, "upper998": 1 + half998})
    lines = pd.concat([one.assign(panel="GP referrals"), one.assign(panel="A&E attendances")], ignore_index=True)
    return units, lines


def test_funnel_grid_legend_explains_every_colour_and_line():
    units, lines = _funnel_panels()
    fig = figures.funnel_grid_figure(units, lines, ncols=2)
    try:
        legend = fig.legends[0]
        texts = [t.get_text() for t in legend.get_texts()]
        assert {"95% limits", "99.8% limits", "within 95% limits", "outside 95% limits (above or below)",
                "outside 99.8% limits (above or below)"} <= set(texts)
        assert any(t.startswith("target") for t in texts)
        # each point colour drawn is one of the legend's marker colours
        marker_colours = {tuple(np.round(matplotlib.colors.to_rgb(h.get_color()), 4)) for h in legend.legend_handles
                          if getattr(h, "get_marker", lambda: "None")() not in ("None", "", None)}
        drawn = {tuple(np.round(c[:3], 4)) for ax in fig.axes for coll in ax.collections for c in coll.get_facecolors()}
        assert drawn and drawn <= marker_colours
    finally:
        plt.close(fig)


@pytest.mark.parametrize("expected_max", [2_500.0, 20_000.0, 600_000.0])
def test_funnel_grid_log_axis_ticks_are_plain_numbers(expected_max):
    units, lines = _funnel_panels(expected_max)
    fig = figures.funnel_grid_figure(units, lines, ncols=2)
    try:
        for ax in fig.axes:
            if not ax.get_visible():
                continue
            assert ax.get_xscale() == "log"
            labels = _ticklabels(ax)
            assert len(labels) >= 2, labels
            assert all(PLAIN.match(t) for t in labels), labels
            if expected_max >= 10_000:
                assert any("," in t for t in labels), labels  # thousands separators
    finally:
        plt.close(fig)


def test_plot_funnel_axes_are_plain_numbers_log_or_not():
    data = pd.DataFrame({"o": [130, 420, 800, 1_800, 5_600, 21_000], "e": [120, 400, 900, 1_500, 6_000, 20_000],
                         "g": list("abcdef")})
    res = funnel.funnel_overdispersion(data, "o", "e", "g", sr_method="CQC", overdispersion="none")
    for log_x in (True, False):
        fig = figures.plot_funnel(res.units, res.limits, log_x=log_x)
        try:
            labels = _ticklabels(fig.axes[0])
            assert labels and all(PLAIN.match(t) for t in labels), (log_x, labels)
            assert any("," in t for t in labels), labels
        finally:
            plt.close(fig)


def _event_study(first: int = -11, last: int = 11) -> pd.DataFrame:
    e = np.arange(first, last + 1)
    rows = []
    for spec in ("100", "all"):
        est = np.where(e < 0, 0.1, -1.0)
        rows.append(pd.DataFrame({"specialty_code": spec, "event_time": e, "estimate": est, "ci_low": est - 1,
                                  "ci_high": est + 1}))
    return pd.concat(rows, ignore_index=True)


@pytest.mark.parametrize(("period_months", "suffix", "word"), [(3, "q", "quarters"), (1, "m", "months")])
def test_event_study_grid_labels_event_time_in_its_unit(period_months, suffix, word):
    es = _event_study()
    fig = figures.event_study_grid_figure(es, period_months=period_months, ncols=2)
    try:
        for ax in [a for a in fig.axes if a.get_visible()]:
            labels = _ticklabels(ax)
            assert "0" in labels
            others = [t for t in labels if t != "0"]
            assert others and all(re.fullmatch(rf"[+-]\d+ {suffix}", t) for t in others), labels
            values = [int(t.split()[0]) for t in others]
            assert min(values) >= es["event_time"].min() and max(values) <= es["event_time"].max()
            assert any(v < 0 for v in values) and any(v > 0 for v in values)
        assert fig.get_supxlabel().startswith(f"{word} since engagement (0 = {word[:-1]} of engagement)")
    finally:
        plt.close(fig)


def test_event_study_grid_takes_the_unit_from_the_evaluation():
    es = _event_study(-5, 5)
    evaluation = SimpleNamespace(event_study=es, period_months=1)  # a DiDEvaluation's two fields used here
    fig = figures.event_study_grid_figure(evaluation, ncols=2)
    try:
        assert all(t == "0" or t.endswith(" m") for t in _ticklabels(fig.axes[0]))
    finally:
        plt.close(fig)
    fig = figures.event_study_grid_figure(es.copy().pipe(lambda d: d.attrs.update(period_months=12) or d), ncols=2)
    try:
        assert all(t == "0" or t.endswith(" y") for t in _ticklabels(fig.axes[0]))
    finally:
        plt.close(fig)


def test_the_reports_event_study_says_quarters_as_the_run_set(sample_run):
    """The figure as the notebook draws it (the table alone) labels event time in the run's own unit."""
    manifest = json.loads((sample_run / "manifest.json").read_text(encoding="utf-8"))
    period_months = int(manifest["parameters"]["03_referral_evaluation"]["period_months"])
    unit = theme.PERIOD_UNITS[period_months]
    table = pd.read_csv(sample_run / "tables" / "ev_event_study.csv", dtype={"specialty_code": str})
    fig = figures.event_study_grid_figure(table)
    try:
        for ax in [a for a in fig.axes if a.get_visible()]:
            labels = _ticklabels(ax)
            assert all(t == "0" or t.endswith(f" {unit[1]}") for t in labels) and len(labels) >= 3, labels
        assert fig.get_supxlabel().startswith(f"{unit[0]} since engagement")
    finally:
        plt.close(fig)


def test_plot_event_study_with_a_unit():
    from pbc_analysis.methods import did

    rng = np.random.default_rng(1)
    rows = []
    for unit in range(40):
        g = [0, 3, 5][unit % 3]
        for t in range(1, 8):
            rows.append({"unit": unit, "t": t, "g": g, "y": rng.normal(0, 0.3) + (-1.0 if g and t >= g else 0.0)})
    agg = did.aggregate(did.att_gt(pd.DataFrame(rows), "y", "unit", "t", "g"), "dynamic")
    fig = figures.plot_event_study(agg, period_months=3)
    try:
        ax = fig.axes[0]
        labels = _ticklabels(ax)
        assert "0" in labels and all(t == "0" or re.fullmatch(r"[+-]\d+ q", t) for t in labels), labels
        assert ax.get_xlabel().startswith("quarters since first treated")
    finally:
        plt.close(fig)
    fig = figures.plot_event_study(agg)
    try:
        assert fig.axes[0].get_xlabel() == "Periods since first treated"
    finally:
        plt.close(fig)


def _spc_texts(fig) -> list[str]:
    ax = fig.axes[0]
    return [t.get_text() for t in ax.get_legend().get_texts()] + [t.get_text() for t in ax.texts]


@pytest.mark.parametrize("improvement", ["decrease", "increase", "neither"])
def test_spc_labels_say_higher_and_lower_not_improvement(improvement):
    y = [2.0, 0.0] * 4 + [1.2, 9.0, 0.8, -9.0, 1.0, 1.1]
    r = spc.xmr(pd.DataFrame({"month": pd.period_range("2020-01", periods=len(y), freq="M").strftime("%Y-%m"), "y": y}),
                "y", "month", baseline=8, improvement=improvement)
    fig = figures.plot_spc(r, title="referral ratio")
    try:
        texts = _spc_texts(fig)
        joined = " ".join(texts).lower()
        assert "improvement" not in joined and "concern" not in joined, texts
        assert {"Special cause: higher", "Special cause: lower"} <= set(texts), texts
        # the point above the limits is the one named "higher"
        ax = fig.axes[0]
        handles, labels = ax.get_legend_handles_labels()
        high = handles[labels.index("Special cause: higher")]
        assert float(np.max(high.get_offsets()[:, 1])) == pytest.approx(9.0)
        low = handles[labels.index("Special cause: lower")]
        assert float(np.min(low.get_offsets()[:, 1])) == pytest.approx(-9.0)
    finally:
        plt.close(fig)


def test_spc_keeps_making_data_count_words_when_asked():
    y = [2.0, 0.0] * 4 + [1.2, 9.0, 0.8, -9.0]
    r = spc.xmr(pd.DataFrame({"month": pd.period_range("2020-01", periods=len(y), freq="M").strftime("%Y-%m"), "y": y}),
                "y", "month", baseline=8, improvement="decrease")
    fig = figures.plot_spc(r, labels="improvement")
    try:
        assert {"Special cause: improvement", "Special cause: concern"} <= set(_spc_texts(fig))
    finally:
        plt.close(fig)
    with pytest.raises(ValueError, match="labels must be"):
        figures.plot_spc(r, labels="better")


def test_spc_large_values_read_as_plain_numbers():
    y = 2_500_000 + 100_000 * np.sin(np.arange(24))
    r = spc.xmr(pd.DataFrame({"month": pd.period_range("2020-01", periods=24, freq="M").strftime("%Y-%m"), "y": y}),
                "y", "month", baseline=12, improvement="decrease")
    fig = figures.plot_spc(r, ylabel="GBP a year")
    try:
        ax = fig.axes[0]
        labels = _ticklabels(ax, "y")
        assert labels and all(PLAIN.match(t) for t in labels), labels
        assert ax.yaxis.get_offset_text().get_text() == ""  # no "1e6" above the axis
    finally:
        plt.close(fig)


def _monitoring(n: int, statuses: list[str]) -> SimpleNamespace:
    months = [f"2007-{m:02d}" for m in range(4, 13)]
    cons = pd.DataFrame({"consortium": "C", "month": months, "ytd": np.arange(1, 10) * 10.0,
                         "profile_budget_ytd": np.arange(1, 10) * 10.0, "forecast_centre": 120.0, "budget": 120.0,
                         "lower": 110.0, "upper": 130.0})
    variance = np.linspace(-0.04, 0.1, n)
    st = pd.DataFrame({"practice_code": [f"P{i:05d}" for i in range(n)], "variance": variance, "budget": 100.0,
                       "lower": 100 * (1 + variance) - 2, "upper": 100 * (1 + variance) + 2,
                       "status": [statuses[i % len(statuses)] for i in range(n)]})
    return SimpleNamespace(consortium=cons, status=st,
                           settings={"level": 0.9, "amber": 0.02, "red": 0.05, "as_at": "2007-12"})


def test_monitoring_variance_panel_names_every_practice_in_its_colour():
    mon = _monitoring(12, ["green", "amber", "red"])
    fig = figures.monitoring_figure(mon)
    ax = fig.axes[2]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert sorted(labels) == sorted(mon.status["practice_code"])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "amber trigger 2%" in legend and "red trigger 5%" in legend and "red (4)" in legend
    plt.close(fig)
    many = _monitoring(120, ["green", "green", "red"])
    fig = figures.monitoring_figure(many)
    ax = fig.axes[2]
    assert ax.get_yticklabels() == [] or not any(t.get_text() for t in ax.get_yticklabels())
    assert sorted(t.get_text() for t in ax.texts) == sorted(many.status.loc[many.status["status"] == "red", "practice_code"])
    plt.close(fig)
