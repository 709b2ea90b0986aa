"""Data-quality summaries of validated inputs (notebook 01).

Validation (:mod:`pbc_analysis.data`) says whether the files *can* be used; this module says how far
they *should* be trusted: how complete the latest months are, whether lists and activity agree, and
what the totals look like over time.

Completeness of the latest months
---------------------------------
Hospital activity (SUS) arrives about three months after the period ends, so the latest months of an
extract are incomplete. For each series (by default each point of delivery, PCT total) we fit a
quasi-Poisson log-linear model, ``log E[y_m] = a + b*t_m + month-of-year effects`` with the dispersion
estimated by Pearson chi-squared over residual degrees of freedom (McCullagh and Nelder 1989; as R's
``quasipoisson``), on every month except the last ``recent_months``. It predicts those months; the
*completeness ratio* is observed / predicted, ``c = y / exp(eta_hat)``. Its interval is built on the log
scale, ``log c +/- z * sqrt(phi / y + se(eta_hat)^2)``: the first term is the over-dispersed Poisson
noise of the observed count (delta method), the second the uncertainty of the prediction from the
fitted trend and seasonality. A month is
flagged incomplete when its ratio is below ``threshold`` and the whole interval is below 1. GP
referrals are not subject to the SUS lag and serve as a control series: if they dip too, the dip is
real activity, not lag.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from pbc_analysis.core import calendar
from pbc_analysis.core.params import StageParams, setting

if TYPE_CHECKING:
    from pbc_analysis.data import Inputs

POD_ORDER = ["first_op", "followup_op", "elective", "non_elective", "ae"]
MIN_FIT_MONTHS = 24   # months before the recent ones that the completeness model is fitted on (two seasonal cycles)
#: the result tables of the stage and the columns each is sorted by when written
TABLE_KEYS: dict[str, list[str] | None] = {
    "dq_table_summary": ["table"], "dq_monthly_totals": ["pod", "month"], "dq_completeness": ["pod", "month"],
    "dq_latest_complete_month": ["pod"], "dq_practice_consistency": ["practice_code"],
    "dq_totals_provider_pod_year": None, "dq_totals_specialty_pod_year": None,
}


@dataclasses.dataclass(frozen=True)
class Params(StageParams):
    """Settings of the data-quality stage (notebook 01).

    Its completeness model also gives the runner the last complete month of hospital activity, from which
    notebook 03's ``activity_end`` and notebook 04's evaluation year are derived
    (:func:`pbc_analysis.stages.facts.data_facts`).
    """

    STAGE = "data_quality"
    completeness_recent_months: int = setting(
        6, "latest months whose completeness (observed / expected from trend and season) is measured", low=1, high=24)
    completeness_threshold: float = setting(
        0.95, "a month is incomplete when observed / expected is below this and its whole interval below 1",
        low=0.0, high=1.0, low_open=True)

    def rules(self, facts: Any) -> list[str]:
        """The window must hold :data:`MIN_FIT_MONTHS` months before the recent ones.

        Parameters
        ----------
        facts : pbc_analysis.stages.facts.DataFacts

        Returns
        -------
        list of str
        """
        months = calendar.months_between(facts.start_month, facts.end_month)
        if months - self.completeness_recent_months < MIN_FIT_MONTHS:
            return [f"completeness_recent_months = {self.completeness_recent_months} leaves "
                    f"{months - self.completeness_recent_months} months before the recent ones in the {months}-month "
                    f"window ({facts.start_month} to {facts.end_month}); the completeness model needs {MIN_FIT_MONTHS} "
                    f"(two seasonal cycles): lower completeness_recent_months to at most {months - MIN_FIT_MONTHS} "
                    "or give a longer window"]
        return []


@dataclasses.dataclass(frozen=True)
class Result:
    """The data-quality stage's outputs (:func:`run`)."""

    summary: pd.DataFrame
    monthly: pd.DataFrame
    completeness: pd.DataFrame
    latest: pd.DataFrame
    consistency: pd.DataFrame
    by_provider: pd.DataFrame
    by_specialty: pd.DataFrame
    head: dict[str, Any]

    def tables(self) -> dict[str, pd.DataFrame]:
        """The result tables, by name (written sorted by :data:`TABLE_KEYS`).

        Returns
        -------
        dict
        """
        return {"dq_table_summary": self.summary, "dq_monthly_totals": self.monthly, "dq_completeness": self.completeness,
                "dq_latest_complete_month": self.latest, "dq_practice_consistency": self.consistency,
                "dq_totals_provider_pod_year": self.by_provider, "dq_totals_specialty_pod_year": self.by_specialty}

    def headline(self) -> dict[str, Any]:
        """The ``data_quality`` section of results.json (:func:`headline`).

        Returns
        -------
        dict
        """
        return self.head

    def describe(self) -> str:
        """The plain-language reading of completeness (:func:`describe_completeness`).

        Returns
        -------
        str
        """
        return describe_completeness(self.latest, self.completeness)


def run(inputs: Inputs, params: Params) -> Result:
    """The data-quality stage: table summary, monthly totals, completeness, list consistency and totals.

    Parameters
    ----------
    inputs : pbc_analysis.data.Inputs
        Validated inputs.
    params : Params
        The stage's settings.

    Returns
    -------
    Result

    References
    ----------
    The completeness model: McCullagh P, Nelder JA (1989), *Generalized Linear Models*, quasi-likelihood
    (as R's ``quasipoisson``); see the module docstring.
    """
    monthly = monthly_totals(inputs, by=["pod"])
    comp = completeness(monthly, by=["pod"], recent_months=params.completeness_recent_months,
                        threshold=params.completeness_threshold)
    latest = latest_complete_month(comp, by=["pod"])
    consistency = population_consistency(inputs)
    return Result(summary=table_summary(inputs), monthly=monthly, completeness=comp, latest=latest,
                  consistency=consistency, by_provider=totals_by(inputs, ["provider_code", "pod"]),
                  by_specialty=totals_by(inputs, ["specialty_code", "pod"]),
                  head=headline(inputs, latest, consistency))


def financial_year(month: pd.Series) -> pd.Series:
    """Financial year ``YYYY/YY`` (April to March) of ``YYYY-MM`` month strings (:func:`calendar.financial_year_of`).

    Parameters
    ----------
    month : pandas.Series of str

    Returns
    -------
    pandas.Series of str
        With ``month``'s index.
    """
    return pd.Series(calendar.financial_year_of(month), index=month.index, dtype="str")


def _span(col: pd.Series) -> tuple[Any, Any]:
    """First and last value of a month or year column (missing values skipped; a ``Categorical`` column
    is judged on the categories its rows use, without building a string per row)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        codes = np.asarray(col.cat.codes)
        used = pd.Index(col.cat.categories)[np.unique(codes[codes >= 0])]
        return (used.min(), used.max()) if len(used) else (np.nan, np.nan)
    col = col.dropna()
    return col.min(), col.max()


def table_summary(inputs: Inputs) -> pd.DataFrame:
    """One row per input table: file, rows, columns, months covered and practices present."""
    rows = []
    for table, path in sorted(inputs.files.items()):
        df = getattr(inputs, table)
        month_col = next((c for c in ("month", "engaged_from") if c in df.columns), None)
        fy_col = "financial_year" if "financial_year" in df.columns else None
        rows.append({
            "table": table,
            "file": path.name,
            "rows": len(df),
            "columns": df.shape[1],
            "first_period": _span(df[month_col or fy_col])[0] if (month_col or fy_col) else None,
            "last_period": _span(df[month_col or fy_col])[1] if (month_col or fy_col) else None,
            "practices": df["practice_code"].nunique() if "practice_code" in df.columns else None,
        })
    return pd.DataFrame(rows)


def monthly_totals(inputs: Inputs, by: Sequence[str] = ("pod",)) -> pd.DataFrame:
    """Monthly activity and cost by ``by`` (columns of ``activity``), plus GP referrals as ``pod='gp_referral'``.

    Returns columns ``[*by, month, activity, cost]`` (cost is missing for referrals): every month of the
    window for each ``by`` group with a row (``activity`` and ``referrals`` may be sparse: a month without
    rows is a 0 total, not a missing month, so the completeness model sees every month).
    """
    by = list(by)
    months = list(inputs.window.months) if inputs.window is not None else None
    act = _every_month(inputs.activity.groupby(by + ["month"], observed=True, sort=True)[["activity", "cost"]].sum(),
                       months)
    if "pod" in by and inputs.referrals is not None:
        ref_by = [c for c in by if c != "pod" and c in inputs.referrals.columns]
        ref = _every_month(inputs.referrals.groupby(ref_by + ["month"], observed=True, sort=True)[["referrals"]].sum(),
                           months)
        ref = ref.rename(columns={"referrals": "activity"}).assign(pod="gp_referral", cost=np.nan)
        for c in by:
            if c not in ref.columns:
                ref[c] = "all"
        act = pd.concat([act, ref[act.columns]], ignore_index=True)
    act["activity"] = act["activity"].astype("int64")
    return act.sort_values(by + ["month"], kind="mergesort").reset_index(drop=True)


def _every_month(sums: pd.DataFrame, months: Sequence[str] | None) -> pd.DataFrame:
    """Sums indexed by ``(*groups, month)`` with every month of ``months`` for every group present, 0 where a
    group has no row that month (the implicit zeros of a sparse table); ``months=None`` keeps the months seen."""
    if months is not None and len(sums):
        if sums.index.nlevels == 1:
            full = pd.Index(list(months), name="month")
        else:
            groups = sums.index.droplevel(-1).unique()
            g_codes = np.repeat(np.arange(len(groups)), len(months))
            m_codes = np.tile(np.arange(len(months)), len(groups))
            g_levels = [groups.get_level_values(i)[g_codes] for i in range(groups.nlevels)] \
                if isinstance(groups, pd.MultiIndex) else [groups[g_codes]]
            full = pd.MultiIndex.from_arrays([*g_levels, pd.Index(list(months))[m_codes]], names=sums.index.names)
        sums = sums.reindex(full, fill_value=0)
    return sums.reset_index()


def completeness(monthly: pd.DataFrame, value: str = "activity", by: Sequence[str] = ("pod",), recent_months: int = 6,
                 threshold: float = 0.95, level: float = 0.95) -> pd.DataFrame:
    """Completeness ratio (observed / expected) of the last ``recent_months`` months of each series.

    ``monthly`` has one row per series and month (``[*by, month, value]``), e.g. from :func:`monthly_totals`.
    Returns ``[*by, month, observed, expected, completeness, ci_low, ci_high, incomplete]``; see the module
    docstring for the model. Needs at least 24 months before the recent window (two full seasonal cycles).
    """
    by = list(by)
    z = stats.norm.ppf(0.5 + level / 2)
    out = []
    for key, series in monthly.groupby(by, sort=True, observed=True):
        s = series.sort_values("month")
        months = s["month"].to_numpy()
        y = s[value].to_numpy(dtype=float)
        n_fit = len(y) - recent_months
        if n_fit < MIN_FIT_MONTHS:
            raise ValueError(f"completeness needs at least 24 months before the last {recent_months}; series {key} has {n_fit}")
        t = np.arange(len(y), dtype=float)
        moy = pd.Categorical(pd.Series(months).str.slice(5, 7), categories=[f"{m:02d}" for m in range(1, 13)])
        X = np.column_stack([np.ones_like(t), t, pd.get_dummies(moy, drop_first=True, dtype=float).to_numpy()])
        fit = sm.GLM(y[:n_fit], X[:n_fit], family=sm.families.Poisson()).fit()
        phi = fit.pearson_chi2 / fit.df_resid  # quasi-Poisson dispersion, as R's quasipoisson
        eta = X[n_fit:] @ fit.params
        se_eta = np.sqrt(phi * np.einsum("ij,jk,ik->i", X[n_fit:], fit.cov_params(), X[n_fit:]))
        mu = np.exp(eta)
        obs = y[n_fit:]
        ratio = obs / mu
        # log(ratio) = log(obs) - eta_hat: var ~ phi / obs (over-dispersed count, delta method) + se(eta_hat)^2
        se_log = np.sqrt(phi / np.maximum(obs, 0.5) + se_eta**2)
        lo, hi = ratio * np.exp(-z * se_log), ratio * np.exp(z * se_log)
        frame = pd.DataFrame({"month": months[n_fit:], "observed": obs.astype("int64"), "expected": mu,
                              "completeness": ratio, "ci_low": lo, "ci_high": hi})
        for col, k in zip(by, key if isinstance(key, tuple) else (key,)):
            frame.insert(by.index(col), col, k)
        out.append(frame)
    res = pd.concat(out, ignore_index=True)
    res["incomplete"] = (res["completeness"] < threshold) & (res["ci_high"] < 1)
    return res


def latest_complete_month(comp: pd.DataFrame, by: Sequence[str] = ("pod",)) -> pd.DataFrame:
    """Per series, the last month before the trailing run of months flagged incomplete, and that run's length."""
    rows = []
    for key, g in comp.sort_values("month").groupby(list(by), sort=True, observed=True):
        flags = g["incomplete"].to_numpy()[::-1]
        trailing = int(np.argmin(flags)) if not flags.all() else len(flags)
        months = g["month"].to_numpy()
        rows.append({**dict(zip(by, key if isinstance(key, tuple) else (key,))),
                     "incomplete_trailing_months": trailing,
                     "latest_complete_month": months[len(months) - trailing - 1] if trailing < len(months) else None})
    return pd.DataFrame(rows)


def practice_lists(population: pd.DataFrame) -> pd.DataFrame:
    """Registered list per practice and month (sum over age bands and sexes)."""
    return population.groupby(["practice_code", "month"], observed=True, sort=True)["registered"].sum().reset_index()


def population_consistency(inputs: Inputs, jump_threshold: float = 0.05, z_threshold: float = 3.5) -> pd.DataFrame:
    """Practice-level checks that lists and activity agree.

    Per practice: first and last list size, average annual list growth, the largest month-on-month list
    change (a jump above ``jump_threshold`` suggests a merger, a list cleaning or a data error), activity
    per 1,000 registered patients per year over the whole window, and its robust z-score
    ``(x - median) / (1.4826 * MAD)`` across practices; ``flag`` names any check that fails.
    """
    lists = practice_lists(inputs.population)
    wide = lists.pivot(index="practice_code", columns="month", values="registered").sort_index(axis=1)
    arr = wide.to_numpy(dtype=float)
    change = np.abs(np.diff(arr, axis=1)) / arr[:, :-1]
    years = (arr.shape[1] - 1) / 12
    growth = (arr[:, -1] / arr[:, 0]) ** (1 / years) - 1 if years > 0 else np.full(len(arr), np.nan)
    act = inputs.activity.groupby("practice_code", observed=True)["activity"].sum()
    person_years = wide.sum(axis=1) / 12
    rate = 1000 * act.reindex(wide.index, fill_value=0).to_numpy(dtype=float) / person_years.to_numpy()  # no rows: 0
    med = np.median(rate)
    mad = 1.4826 * np.median(np.abs(rate - med))
    robust_z = (rate - med) / mad if mad > 0 else np.zeros_like(rate)
    out = pd.DataFrame({
        "practice_code": wide.index.astype(str),
        "list_first_month": arr[:, 0].astype("int64"),
        "list_last_month": arr[:, -1].astype("int64"),
        "annual_list_growth": growth,
        "max_monthly_list_change": change.max(axis=1) if change.shape[1] else np.zeros(len(arr)),
        "activity_per_1000_per_year": rate,
        "activity_rate_robust_z": robust_z,
    })
    flags = np.where(out["max_monthly_list_change"] > jump_threshold, "list jump", "")
    flags = np.where(np.abs(out["activity_rate_robust_z"]) > z_threshold,
                     np.where(flags == "", "activity rate outlier", flags + "; activity rate outlier"), flags)
    out["flag"] = flags
    return out.reset_index(drop=True)


def totals_by(inputs: Inputs, dims: Iterable[str], period: str = "financial_year") -> pd.DataFrame:
    """Activity and cost totals by ``dims`` and ``period`` (``month`` or ``financial_year``); groups whose
    activity and cost are both 0 are left out, so the table is the same whether zeros are explicit rows or
    implicit (a sparse ``activity``)."""
    dims = list(dims)
    act = inputs.activity
    key = act["month"] if period == "month" else financial_year(act["month"])
    grouped = act.assign(**{period: key}).groupby(dims + [period], observed=True, sort=True)[["activity", "cost"]].sum()
    grouped = grouped[(grouped["activity"].to_numpy() != 0) | (grouped["cost"].to_numpy() != 0)]
    return grouped.reset_index()


def describe_completeness(latest: pd.DataFrame, comp: pd.DataFrame) -> str:
    """A plain-language reading of :func:`latest_complete_month` for the notebook and report."""
    lagged = latest[latest["incomplete_trailing_months"] > 0]
    if lagged.empty:
        return ("No point of delivery shows incomplete latest months: every recent month is within the "
                "range the seasonal trend predicts.")
    parts = []
    for _, r in lagged.iterrows():
        last = comp[(comp["pod"] == r["pod"])].sort_values("month").tail(int(r["incomplete_trailing_months"]))
        ratios = ", ".join(f"{m} {c:.0%}" for m, c in zip(last["month"], last["completeness"]))
        parts.append(f"{r['pod']} (last complete month {r['latest_complete_month']}; completeness {ratios})")
    ref = latest[latest["pod"] == "gp_referral"]
    control = ""
    if not ref.empty:
        control = (" GP referrals, which do not pass through the hospital data lag, show no such shortfall, so the "
                   "dip is data lag, not a fall in demand." if int(ref["incomplete_trailing_months"].iloc[0]) == 0 else
                   " GP referrals fall too, so part of the dip may be real.")
    return ("The latest months are incomplete for " + "; ".join(parts) + "." + control +
            " Analyses that use monthly activity must stop at the last complete month or adjust for completeness.")


def headline(inputs: Inputs, latest: pd.DataFrame, consistency: pd.DataFrame) -> dict:
    """Headline data-quality figures for ``results.json`` (section ``data_quality``)."""
    hospital = latest[latest["pod"] != "gp_referral"]
    complete = hospital["latest_complete_month"].dropna()
    window = inputs.window
    assert window is not None, "inputs from data.load_inputs always have a window"
    fy = (inputs.activity.assign(financial_year=financial_year(inputs.activity["month"]))
          .groupby("financial_year", sort=True)[["activity", "cost"]].sum())
    return {
        "window": {"start_month": window.start_month, "end_month": window.end_month, "months": len(window.months)},
        "practices": int(inputs.practices["practice_code"].nunique()),
        "consortia": int(inputs.practices["consortium"].nunique()),
        "providers": int(inputs.providers["provider_code"].nunique()),
        "specialties": int(inputs.specialties["specialty_code"].nunique()),
        "engaged_practices": int(inputs.engagement["engaged_from"].notna().sum()),
        "activity_rows": int(len(inputs.activity)),
        "cost_by_financial_year_gbp": {k: round(float(v), 2) for k, v in fy["cost"].items()},
        "activity_by_financial_year": {k: int(v) for k, v in fy["activity"].items()},
        "incomplete_trailing_months": {r["pod"]: int(r["incomplete_trailing_months"]) for _, r in latest.iterrows()},
        "latest_complete_month": min(complete) if len(complete) else None,
        "practices_flagged": int((consistency["flag"] != "").sum()),
    }
