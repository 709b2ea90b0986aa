"""Fair shares and historic budgets: the need model, its fit, target shares, the check against provided budgets.

See :mod:`pbc_analysis.stages.budgets` ("Historic budget", "Fair shares") for the rules.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from pbc_analysis.core import calendar
from pbc_analysis.core.names import did_you_mean

__all__ = ["TERMS", "compare_with_provided", "fair_shares", "fit_need_model", "historic_budgets", "model_fit",
           "parse_formula", "practice_covariates"]

#: built-in formula terms (practice-level covariates) and what they are
TERMS: dict[str, str] = {
    "deprivation": "IMD score standardised over the PCT's practices (mean 0, SD 1)",
    "single_handed": "1 for a single-handed practice (GP supply)",
    "log_list_size": "log of the mean registered list in the base years, centred (practice scale)",
    "provider_cost_index": "log of the practice's actual cost / (activity x national tariff) in the base years, "
                           "centred: the case-mix (HRG) and price level of the providers it uses (supply)",
    "follow_up_ratio": "log of follow-up / first outpatient attendances in the base years, centred (provider "
                       "behaviour: supply)",
    "engaged": "share of base-year months the practice was engaged in PBC (practice action)",
}


def historic_budgets(annual: pd.DataFrame, index: pd.DataFrame, base_years: Sequence[str], target_year: str) -> pd.DataFrame:
    """Historic budget per practice: mean over ``base_years`` of the annualised cost at the target year's
    prices (components summed) x the list index.

    Parameters
    ----------
    annual : DataFrame
        From :func:`pbc_analysis.stages.budgets.costs.annual_costs`.
    index : DataFrame
        From :func:`pbc_analysis.stages.budgets.lists.list_growth` (optionally with ``list_index_registered``).
    base_years : sequence of str
    target_year : str

    Returns
    -------
    DataFrame
        ``practice_code, financial_year, historic_spend, list_month, list_base, list_target, list_index,
        historic_budget`` (and ``historic_budget_registered`` with the registered-list index when ``index``
        carries ``list_index_registered``). A practice without activity in one base year counts 0.

    References
    ----------
    Audit Commission (2007), case study 9; DOMAIN.md "Budgets" (historic budget).
    """
    sub = annual[annual["financial_year"].isin(list(base_years))]
    per_year = sub.pivot_table(index="practice_code", columns="financial_year", values="annual_at_target",
                               aggfunc="sum", fill_value=0.0).reindex(columns=list(base_years), fill_value=0.0)
    spend = per_year.mean(axis=1)
    out = index.set_index("practice_code").reindex(spend.index).reset_index()
    out.insert(1, "financial_year", target_year)
    out.insert(2, "historic_spend", spend.to_numpy(float))
    out["historic_budget"] = out["historic_spend"] * out["list_index"]
    if "list_index_registered" in out.columns:
        out["historic_budget_registered"] = out["historic_spend"] * out["list_index_registered"]
    return out


def compare_with_provided(historic: pd.DataFrame, provided: pd.DataFrame | None) -> pd.DataFrame:
    """Set the historic budgets beside an existing ``budgets`` table for the same year.

    Parameters
    ----------
    historic : DataFrame
        From :func:`historic_budgets`.
    provided : DataFrame or None
        The validated ``budgets`` table (``practice_code, financial_year, budget``).

    Returns
    -------
    DataFrame
        ``practice_code, financial_year, historic_budget, provided_budget, difference, relative_difference``
        and, when ``historic`` has it, the registered-list variant (the rule ``pbc synth`` documents); empty
        if there is no provided table.

    References
    ----------
    ``ground_truth.json["budget_rule"]`` of a synthetic PCT (``pbc synth``).
    """
    cols = ["practice_code", "financial_year", "historic_budget", "provided_budget", "difference", "relative_difference"]
    reg = "historic_budget_registered" in historic.columns
    if reg:
        cols += ["historic_budget_registered", "relative_difference_registered"]
    if provided is None or len(provided) == 0:
        return pd.DataFrame(columns=cols)
    m = historic[[c for c in ("practice_code", "financial_year", "historic_budget", "historic_budget_registered")
                  if c in historic.columns]].merge(
        provided.rename(columns={"budget": "provided_budget"}).astype({"practice_code": "str", "financial_year": "str"}),
        on=["practice_code", "financial_year"], how="inner")
    m["difference"] = m["historic_budget"] - m["provided_budget"]
    m["relative_difference"] = m["difference"] / m["provided_budget"]
    if reg:
        m["relative_difference_registered"] = m["historic_budget_registered"] / m["provided_budget"] - 1
    return m[cols]


def parse_formula(formula: str, extra: Sequence[str] = ()) -> tuple[list[str], list[str]]:
    """Split ``"need terms | supply terms"`` (terms joined by ``+``) into two lists, checking every term.

    Parameters
    ----------
    formula : str
        ``"1"`` or an empty side means no terms.
    extra : sequence of str
        The columns of the ``covariates`` table (terms besides :data:`TERMS`).

    Returns
    -------
    need, supply : list of str

    Raises
    ------
    ValueError
        For unknown, repeated or doubly assigned terms, with a suggestion.

    References
    ----------
    Dixon J et al. (2011), BMJ 342:d930 (need and supply variables of the person-based formula).
    """
    if not isinstance(formula, str):
        raise ValueError(f"formula must be a string such as 'deprivation | provider_cost_index', got {formula!r}")
    if formula.count("|") > 1:
        raise ValueError(f"formula {formula!r} has more than one '|': write 'need terms | supply terms'")
    need_s, _, supply_s = formula.partition("|")
    known = list(TERMS) + [c for c in extra if c not in TERMS]

    def split(side: str) -> list[str]:
        terms = [t.strip() for t in side.split("+")]
        terms = [t for t in terms if t not in ("", "1")]
        for t in terms:
            if t not in known:
                raise ValueError(f"formula: unknown term {t!r} in {formula!r}{did_you_mean(t, known)}. Known terms: {', '.join(known)} "
                                 "(or a column of the covariates table, e.g. disease prevalence)")
        dup = sorted({t for t in terms if terms.count(t) > 1})
        if dup:
            raise ValueError(f"formula: term(s) {dup} repeated in {formula!r}")
        return terms

    need, supply = split(need_s), split(supply_s)
    both = sorted(set(need) & set(supply))
    if both:
        raise ValueError(f"formula: term(s) {both} are both need and supply in {formula!r}; a term is one or the other")
    return need, supply


def practice_covariates(practices: pd.DataFrame, cells: pd.DataFrame, lists_base: pd.DataFrame,
                        engagement: pd.DataFrame | None, base_years: Sequence[str],
                        extra: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per practice with every built-in formula term (:data:`TERMS`) and the columns of ``extra``.

    Parameters
    ----------
    practices : DataFrame
        The validated ``practices`` table.
    cells : DataFrame
        From :func:`pbc_analysis.stages.budgets.costs.recost_cells`.
    lists_base : DataFrame
        Base-year mean lists (:func:`pbc_analysis.stages.budgets.lists.weighted_lists`).
    engagement : DataFrame or None
        ``practice_code, engaged_from``.
    base_years : sequence of str
    extra : DataFrame, optional
        A ``practice_code`` table of further covariates (e.g. disease prevalence; every practice needs a
        finite value).

    Returns
    -------
    DataFrame

    References
    ----------
    DH weighted capitation formula (need and supply covariates); DOMAIN.md "Spend identity" (follow-up ratio).
    """
    pr = practices.sort_values("practice_code")
    codes = pr["practice_code"].astype(str).to_numpy()
    imd = pr["imd_score"].to_numpy(float)
    sd = imd.std()
    out = pd.DataFrame({"practice_code": codes, "deprivation": (imd - imd.mean()) / (sd if sd > 0 else 1.0),
                        "single_handed": pr["single_handed"].to_numpy(bool).astype(float)})
    lb = lists_base.set_index("practice_code")["registered"].reindex(codes).to_numpy(float)
    out["log_list_size"] = np.log(lb) - np.log(lb).mean()
    sub = cells[cells["financial_year"].isin(list(base_years))]
    nat = (sub["activity"].to_numpy(float) * sub["price"].fillna(0.0).to_numpy(float))
    g = sub.assign(national=nat).groupby("practice_code", sort=True)[["cost", "national"]].sum().reindex(codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        pci = np.log(g["cost"].to_numpy(float) / g["national"].to_numpy(float))
    out["provider_cost_index"] = pci - np.nanmean(pci)
    pods = sub.groupby(["practice_code", "pod"], sort=True)["activity"].sum().unstack("pod").reindex(codes)
    with np.errstate(divide="ignore", invalid="ignore"):
        fur = np.log(pods.get("followup_op", pd.Series(np.nan, index=codes)).to_numpy(float)
                     / pods.get("first_op", pd.Series(np.nan, index=codes)).to_numpy(float))
    out["follow_up_ratio"] = fur - np.nanmean(fur) if np.isfinite(fur).any() else fur
    months = [m for y in base_years for m in calendar.fy_months(y)]
    if engagement is not None:
        e = engagement.set_index("practice_code")["engaged_from"].reindex(codes)
        ef = e.astype(object).where(e.notna(), "9999-99").astype(str).to_numpy()
        out["engaged"] = (np.asarray(months, dtype=str)[None, :] >= ef[:, None]).mean(axis=1)
    else:
        out["engaged"] = 0.0
    if extra is not None:
        for c, v in _extra_covariates(extra, codes).items():
            out[c] = v
    return out


def _extra_covariates(extra: pd.DataFrame, codes: np.ndarray) -> dict[str, np.ndarray]:
    if "practice_code" not in extra.columns:
        raise ValueError("covariates needs a practice_code column")
    x = extra.astype({"practice_code": "str"}).set_index("practice_code")
    if x.index.duplicated().any():
        raise ValueError("covariates has a practice more than once")
    clash = sorted(set(x.columns) & set(TERMS))
    if clash:
        raise ValueError(f"covariates columns {clash} clash with built-in terms; rename them")
    x = x.reindex(codes)
    out = {}
    for c in x.columns:
        v = pd.to_numeric(x[c], errors="coerce").to_numpy(float)
        bad = codes[~np.isfinite(v)]
        if len(bad):
            raise ValueError(f"covariates column {c!r} has no finite value for {len(bad)} practice(s) "
                             f"(e.g. {', '.join(bad[:3])}); supply a number for every practice")
        out[c] = v
    return out


def _glm(y: np.ndarray, X: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Quasi-Poisson GLM (log link) by IRLS: returns coefficients, their covariance and the dispersion."""
    import statsmodels.api as sm

    fit = sm.GLM(y, X, family=sm.families.Poisson(), offset=offset).fit(scale="X2")
    return np.asarray(fit.params, float), np.asarray(fit.cov_params(), float), float(fit.scale)


def fit_need_model(base: pd.DataFrame, covariates: pd.DataFrame, need: Sequence[str], supply: Sequence[str],
                   level: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fit the fair-shares regression (quasi-Poisson, weighted list as exposure) for every component of ``base``.

    Parameters
    ----------
    base : DataFrame
        One row per practice and component with ``cost`` (base-year annual cost at the target year's
        prices) and ``weighted_list`` (base-year mean age-sex weighted list).
    covariates : DataFrame
        From :func:`practice_covariates`.
    need, supply : sequence of str
        The formula's terms (:func:`parse_formula`).
    level : float
        Level of the coefficients' confidence intervals.

    Returns
    -------
    coefficients : DataFrame
        ``component, term, role (intercept/need/supply), estimate, std_error, ci_low, ci_high, rate_ratio``
        (per unit of the term: per SD of IMD for ``deprivation``), ``dispersion, n_practices``.
    fitted : DataFrame
        Per practice and component, ``fitted`` (supply at actual values) and ``need`` (``weighted_list x
        exp(need terms)``, supply held at the average).

    References
    ----------
    McCullagh P, Nelder JA (1989), *Generalized Linear Models* (quasi-Poisson, Pearson dispersion); Dixon J
    et al. (2011), BMJ 342:d930 (supply variables held at the average when predicting need).
    """
    from scipy import stats

    terms = list(need) + list(supply)
    cov = covariates.set_index("practice_code")
    for t in terms:
        v = cov[t].to_numpy(float)
        if not np.all(np.isfinite(v)):
            raise ValueError(f"formula term {t!r} is missing for some practices; drop it from the formula")
        if np.ptp(v) == 0:
            raise ValueError(f"formula term {t!r} takes one value for every practice, so its effect cannot be "
                             "estimated; drop it from the formula")
    z = stats.norm.ppf(0.5 + level / 2)
    coef_rows, fitted_rows = [], []
    for comp, g in base.groupby("component", sort=False):
        g = g.sort_values("practice_code")
        X = np.column_stack([np.ones(len(g))] + [cov.loc[g["practice_code"], t].to_numpy(float) for t in terms])
        if np.linalg.matrix_rank(X) < X.shape[1]:
            raise ValueError(f"formula terms {terms} are collinear for component {comp!r}; drop one of them")
        y = g["cost"].to_numpy(float)
        off = np.log(g["weighted_list"].to_numpy(float))
        b, V, phi = _glm(y, X, off)
        se = np.sqrt(np.diag(V))
        roles = ["intercept"] + ["need"] * len(need) + ["supply"] * len(supply)
        coef_rows.append(pd.DataFrame({"component": comp, "term": ["intercept"] + terms, "role": roles,
                                       "estimate": b, "std_error": se, "ci_low": b - z * se, "ci_high": b + z * se,
                                       "rate_ratio": np.exp(b), "dispersion": phi, "n_practices": len(g)}))
        nX = 1 + len(need)
        fitted_rows.append(pd.DataFrame({
            "practice_code": g["practice_code"].to_numpy(), "component": comp, "cost": y,
            "weighted_list": g["weighted_list"].to_numpy(float),
            "fitted": np.exp(off + X @ b), "need": np.exp(off + X[:, 1:nX] @ b[1:nX])}))
    return pd.concat(coef_rows, ignore_index=True), pd.concat(fitted_rows, ignore_index=True)


def _weighted_r2(y: np.ndarray, yhat: np.ndarray, w: np.ndarray) -> float:
    ybar = np.sum(w * y) / np.sum(w)
    return float(1 - np.sum(w * (y - yhat) ** 2) / np.sum(w * (y - ybar) ** 2))


def model_fit(fitted: pd.DataFrame, lists_base: pd.DataFrame) -> pd.DataFrame:
    """Practice-level fit of the fair-shares model, per component and for all spend (``component="all"``).

    Parameters
    ----------
    fitted : DataFrame
        From :func:`fit_need_model`.
    lists_base : DataFrame
        Base-year mean lists (``practice_code, registered``).

    Returns
    -------
    DataFrame
        ``component, n_practices, cost, r_squared`` (R squared of cost per registered patient,
        list-weighted, with supply terms at their actual values), ``r_squared_need`` (the need-only
        prediction scaled to the actual total) and ``share_more_than_10pct_from_actual``.

    References
    ----------
    Dixon J et al. (2011), BMJ 342:d930 (PBRA: R squared 0.74-0.79; about a third of practices beyond 10%).
    """
    L = lists_base.set_index("practice_code")["registered"]
    rows = []
    frames = [(c, g) for c, g in fitted.groupby("component", sort=False)]
    allg = fitted.groupby("practice_code", sort=True)[["cost", "fitted"]].sum()
    need_scaled = fitted.assign(ns=fitted["need"] * fitted.groupby("component")["cost"].transform("sum")
                                / fitted.groupby("component")["need"].transform("sum"))
    allg["need_scaled"] = need_scaled.groupby("practice_code", sort=True)["ns"].sum()
    if [c for c, _ in frames] != ["all"]:  # several components: add all spend together
        frames.append(("all", allg.reset_index()))
    for comp, g in frames:
        g = g.sort_values("practice_code")
        w = L.reindex(g["practice_code"]).to_numpy(float)
        y = g["cost"].to_numpy(float)
        ns = (g["need_scaled"].to_numpy(float) if "need_scaled" in g.columns
              else g["need"].to_numpy(float) * y.sum() / g["need"].sum())
        rows.append({"component": comp, "n_practices": len(g), "cost": float(y.sum()),
                     "r_squared": _weighted_r2(y / w, g["fitted"].to_numpy(float) / w, w),
                     "r_squared_need": _weighted_r2(y / w, ns / w, w),
                     "share_more_than_10pct_from_actual": float(np.mean(np.abs(ns / y - 1) > 0.10))})
    return pd.DataFrame(rows)


def fair_shares(fitted: pd.DataFrame, lists_target: pd.DataFrame) -> pd.DataFrame:
    """Target shares from the need model.

    Parameters
    ----------
    fitted : DataFrame
        The model's ``need`` at base-year lists (:func:`fit_need_model`), rescaled here to the target lists
        (``need x WL(target) / WL(base)``, i.e. ``WL(target) x exp(need terms)``).
    lists_target : DataFrame
        The lists at the list month (``registered``, ``weighted_<component>``, ``weighted_list``).

    Returns
    -------
    DataFrame
        Per practice ``registered`` (at the list month), ``weighted_list`` (all spend), ``list_share``,
        ``age_sex_share`` (components' weighted-list shares weighted by their cost), ``target_share`` (need
        shares likewise), ``age_sex_index = age_sex_share / list_share`` and ``need_index = target_share /
        age_sex_share``.

    References
    ----------
    DH weighted capitation formula (target shares of need); DOMAIN.md "Budgets" (fair shares).
    """
    lt = lists_target.set_index("practice_code")
    comps = list(dict.fromkeys(fitted["component"]))
    long = lists_target.melt(id_vars="practice_code", value_vars=[f"weighted_{c}" for c in comps],
                             var_name="component", value_name="wl_target")
    long["component"] = long["component"].str.slice(len("weighted_"))
    f = fitted.merge(long, on=["practice_code", "component"], how="left", validate="one_to_one")
    f["need_target"] = f["need"] * f["wl_target"] / f["weighted_list"]
    w_c = f.groupby("component")["cost"].sum()
    w_c = w_c / w_c.sum()
    f["w"] = f["component"].map(w_c)
    f["as_share"] = f["w"] * f["wl_target"] / f.groupby("component")["wl_target"].transform("sum")
    f["need_share"] = f["w"] * f["need_target"] / f.groupby("component")["need_target"].transform("sum")
    g = f.groupby("practice_code", sort=True)[["as_share", "need_share"]].sum()
    reg = lt["registered"].reindex(g.index).to_numpy(float)
    out = pd.DataFrame({"practice_code": g.index.astype(str), "registered": reg,
                        "weighted_list": lt["weighted_list"].reindex(g.index).to_numpy(float)
                        if "weighted_list" in lt.columns else reg,
                        "list_share": reg / reg.sum(), "age_sex_share": g["as_share"].to_numpy(float),
                        "target_share": g["need_share"].to_numpy(float)})
    out["target_share"] = out["target_share"] / out["target_share"].sum()
    out["age_sex_index"] = out["age_sex_share"] / out["list_share"]
    out["need_index"] = out["target_share"] / out["age_sex_share"]
    return out
