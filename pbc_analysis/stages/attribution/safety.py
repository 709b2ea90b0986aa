"""The safety check before any saving is paid: did emergencies rise where referrals fell?

The Audit Commission's concern about practice based commissioning is under-referral: a practice that cuts
referrals it should have made may see its patients arrive as emergencies instead. So, for every engaged practice
(and every possible under-referrer) and each year savings are shared for, its emergency admissions
(``non_elective``) and A&E attendances (``ae``) are compared with what they would have been had they moved as the
comparison practices' did:

    expected_p = base_p x (list_p,year / list_p,base) x g,    g = (sum_c O_c / sum_c L_c,year) / (sum_c B_c / sum_c L_c,base)

with ``base_p`` the practice's count in the base year's same months, ``L`` mean registered lists and ``c`` the
comparison practices (never engaged by the year's end; every practice when fewer than :data:`MIN_COMPARATORS`).
Only months complete in every table are used (a lag-adjusted month is left out, in both years). The ratio
``theta = O / expected`` and its interval are exact, conditional on ``O + base`` (the two counts are Poisson, so
``O | O + B ~ Binomial(O + B, theta w / (1 + theta w))`` with ``w = expected / base``; Clopper-Pearson limits
mapped back to ``theta``). A **rise** is flagged when the lower limit at ``level`` (default 99.8%, the funnel
plot's outer limit, because some 60 practices and two measures are tested each year) is above 1; sharing then
holds the practice's saving for review (:func:`pbc_analysis.stages.attribution.ledger.share_savings`).

References
----------
Audit Commission (2007), Putting commissioning into practice, paras 75-77 (the risk of under-referral);
Breslow NE, Day NE (1987), Statistical Methods in Cancer Research II, IARC, 2.4 (the conditional binomial test of
two Poisson rates); Clopper CJ, Pearson ES (1934), Biometrika 26:404-413; Spiegelhalter DJ (2005), Funnel plots
for comparing institutional performance, Stat Med 24:1185-1202 (the 99.8% limit).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from pbc_analysis.core.calendar import fy_of_month
from pbc_analysis.core.checks import check_number

__all__ = ["MEASURES", "MIN_COMPARATORS", "safety_check", "safety_flags"]

#: the measures checked: name -> point of delivery of the activity table
MEASURES = {"emergency_admissions": "non_elective", "ae_attendances": "ae"}
#: fewest never-engaged practices to compare with; below it every practice is the comparison
MIN_COMPARATORS = 5


def _month_of_year(months: pd.Series) -> pd.Series:
    return months.astype(str).str.slice(5, 7)


def _counts(activity: pd.DataFrame, pod: str, months: Sequence[str]) -> pd.Series:
    a = activity[(activity["pod"].astype(str) == pod) & activity["month"].astype(str).isin(list(months))]
    return a.groupby(a["practice_code"].astype(str), observed=True)["activity"].sum()


def _lists(population: pd.DataFrame, months: Sequence[str]) -> pd.Series:
    p = population[population["month"].astype(str).isin(list(months))]
    total = p.groupby([p["practice_code"].astype(str), p["month"].astype(str)], observed=True)["registered"].sum()
    return total.groupby(level=0).mean()


def _ratio_interval(o: np.ndarray, b: np.ndarray, w: np.ndarray, level: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact interval of theta (O ~ Poisson(theta w mu), B ~ Poisson(mu)) and the one-sided p-value of a rise."""
    n = o + b
    a = (1 - level) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        lo_pi = np.where(o > 0, stats.beta.ppf(a, o, b + 1), 0.0)
        hi_pi = np.where(b > 0, stats.beta.ppf(1 - a, o + 1, b), 1.0)
        lo = lo_pi / (1 - lo_pi) / w
        hi = np.where(hi_pi < 1, hi_pi / (1 - hi_pi) / w, np.inf)
    p_rise = stats.binom.sf(o - 1, n, w / (1 + w))  # P(O >= o | theta = 1)
    return lo, hi, np.where(n > 0, p_rise, 1.0)


def safety_check(activity: pd.DataFrame, population: pd.DataFrame, engagement: pd.DataFrame, base_year: str,
                 years: Sequence[str], practices: Sequence[str], incomplete_months: Sequence[str] = (),
                 level: float = 0.998) -> pd.DataFrame:
    """Emergency admissions and A&E attendances of ``practices`` against expected, for each year of ``years``.

    Parameters
    ----------
    activity : pandas.DataFrame
        The activity table (``practice_code, pod, month, activity``; pods ``non_elective`` and ``ae``).
    population : pandas.DataFrame
        Registered lists (``practice_code, month, registered``, any breakdown).
    engagement : pandas.DataFrame
        ``practice_code, engaged_from`` (missing = never engaged).
    base_year : str
        The financial year before engagement (``YYYY/YY``).
    years : sequence of str
        Financial years to check.
    practices : sequence of str
        The practices checked (engaged practices and possible under-referrers).
    incomplete_months : sequence of str
        Months (``YYYY-MM``) lag-adjusted in any table: left out of the year and of the base.
    level : float
        Confidence of the interval and of the rise flag.

    Returns
    -------
    pandas.DataFrame
        ``practice_code, financial_year, measure, months, comparison, observed, base_observed, list_ratio,
        comparison_growth, expected, ratio, ci_low, ci_high, p_rise, rise``; one row per practice, year and measure.

    References
    ----------
    Module docstring (Audit Commission 2007; Breslow and Day 1987; Clopper and Pearson 1934; Spiegelhalter 2005).
    """
    level = check_number("level", level, 0, 1, low_open=True, high_open=True, fix="use e.g. 0.998")
    months_all = sorted(activity["month"].astype(str).unique())
    drop = set(map(str, incomplete_months))
    base_m = [m for m in months_all if fy_of_month(m) == base_year]
    eng = engagement.assign(practice_code=engagement["practice_code"].astype(str))
    checked = sorted(set(map(str, practices)))
    frames = []
    for year in years:
        year_m = [m for m in months_all if fy_of_month(m) == year and m not in drop]
        moy = set(_month_of_year(pd.Series(year_m)))
        base_y = [m for m in base_m if m[5:7] in moy and m not in drop]
        moy &= set(_month_of_year(pd.Series(base_y)))
        year_m = [m for m in year_m if m[5:7] in moy]
        end = year_m[-1] if year_m else ""
        never = eng.loc[eng["engaged_from"].isna() | (eng["engaged_from"].astype(str) > end), "practice_code"]
        comp = sorted(set(never) - set(checked))
        comparison = "never engaged" if len(comp) >= MIN_COMPARATORS else "every practice"
        if comparison == "every practice":
            comp = sorted(activity["practice_code"].astype(str).unique())
        l_year, l_base = _lists(population, year_m), _lists(population, base_y)
        for measure, pod in MEASURES.items():
            o_all, b_all = _counts(activity, pod, year_m), _counts(activity, pod, base_y)
            g = ((o_all.reindex(comp).fillna(0).sum() / l_year.reindex(comp).sum())
                 / (b_all.reindex(comp).fillna(0).sum() / l_base.reindex(comp).sum()))
            o = o_all.reindex(checked).fillna(0).to_numpy(float)
            b = b_all.reindex(checked).fillna(0).to_numpy(float)
            lr = (l_year.reindex(checked) / l_base.reindex(checked)).to_numpy(float)
            w = lr * g
            lo, hi, p = _ratio_interval(o, b, w, level)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.where(b > 0, o / (b * w), np.nan)
            frames.append(pd.DataFrame({
                "practice_code": checked, "financial_year": year, "measure": measure, "months": len(year_m),
                "comparison": comparison, "observed": o.astype(np.int64), "base_observed": b.astype(np.int64),
                "list_ratio": lr, "comparison_growth": g, "expected": b * w, "ratio": ratio, "ci_low": lo,
                "ci_high": hi, "p_rise": p, "rise": lo > 1}))
    cols = ["practice_code", "financial_year", "measure", "months", "comparison", "observed", "base_observed",
            "list_ratio", "comparison_growth", "expected", "ratio", "ci_low", "ci_high", "p_rise", "rise"]
    if not frames:
        return pd.DataFrame(columns=cols)
    return pd.concat(frames, ignore_index=True)[cols].sort_values(
        ["practice_code", "financial_year", "measure"], kind="stable").reset_index(drop=True)


def safety_flags(check: pd.DataFrame) -> pd.DataFrame:
    """One row per practice and year: whether either measure rose, and which.

    Parameters
    ----------
    check : pandas.DataFrame
        :func:`safety_check`.

    Returns
    -------
    pandas.DataFrame
        ``practice_code, financial_year, emergency_rise, measures`` (``measures``: the risen ones in words).

    References
    ----------
    Module docstring.
    """
    words = {"emergency_admissions": "emergency admissions", "ae_attendances": "A&E attendances"}
    risen = check[check["rise"].astype(bool)]
    named = risen.groupby(["practice_code", "financial_year"])["measure"].agg(
        lambda s: " and ".join(words.get(m, m) for m in sorted(s)))
    out = check[["practice_code", "financial_year"]].drop_duplicates().reset_index(drop=True)
    key = pd.MultiIndex.from_frame(out)
    out["measures"] = named.reindex(key).fillna("").to_numpy()
    out["emergency_rise"] = out["measures"] != ""
    return out[["practice_code", "financial_year", "emergency_rise", "measures"]]
