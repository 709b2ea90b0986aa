"""The completeness factors' uncertainty in the attribution's intervals (stages/attribution/completion.py, the
covariance in panel.py, the lines' gradients in delta.py).

Checked three ways: hand cases of the backtest and the Poisson fallback; every gradient against central finite
differences of the real computation (completeness changed, cells, decomposition, cost per referral and the
savings recomputed); and the sample's completed totals against the completeness the generator planted.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from pbc_analysis.stages import attribution as at
from pbc_analysis.stages.attribution import causal, completion, decomposition, delta, panel

BASE, YEARS = "2004/05", ["2005/06", "2006/07", "2007/08"]
H = 1e-5


@pytest.fixture(scope="module")
def comp(sample_inputs):
    table, cov = panel._completeness(sample_inputs, 3, 12)
    return table, pd.DataFrame(cov)


def _perturbed(table: pd.DataFrame, q: int, step: float) -> pd.DataFrame:
    """The completeness table with completed total ``q`` scaled by ``1 + step``."""
    out = table.copy()
    out.loc[q, "completeness"] = out.loc[q, "completeness"] / (1 + step)
    return out


def test_backtest_of_an_exactly_seasonal_series_has_no_error():
    """Emergency pod whose every month is the same month a year earlier x 1.05: the method predicts it exactly,
    so every backtest error is 0 (to rounding)."""
    season = np.array([100, 90, 95, 120, 130, 110, 105, 100, 115, 125, 140, 150], dtype=float)
    tot = np.concatenate([season * 1.05 ** y for y in range(5)])
    Ak = tot.reshape(1, 1, -1)
    origins = np.arange(24, tot.size - 6 + 1)
    err = panel._backtest(Ak, np.zeros((1, 1, tot.size)), False, origins, 3, 12)
    assert err.shape == (origins.size, 3)
    np.testing.assert_allclose(err, 0.0, atol=1e-12)


def test_backtest_errors_are_the_log_ratio_of_observed_to_expected():
    """Hand case of one elective origin: reference activity per referral 2, referrals 10 then 20, observed 25 and
    36: errors log(25/20) and log(36/40)."""
    R = np.ones((1, 1, 14)) * 5.0
    R[0, 0, 12:] = [10.0, 20.0]
    Ak = (R * 2.0).copy()
    Ak[0, 0, 12:] = [25.0, 36.0]
    err = panel._backtest(Ak, R, True, np.array([12]), 2, 12)
    np.testing.assert_allclose(err, [[np.log(25 / 20), np.log(36 / 40)]])


def test_covariance_is_the_backtests_mean_square_and_zero_where_nothing_is_completed(sample_inputs, comp):
    table, cov = comp
    assert (table["error_basis"] == "backtest").all() and (table["backtests"] == 31).all()   # 60 months - 3 - 3 - 24 + 1
    A, R, pods = panel._activity_and_referrals(sample_inputs, panel._window_months(sample_inputs))
    k = list(pods).index("non_elective")
    err = panel._backtest(A[:, :, k, :], R, False, np.arange(24, 55), 3, 12)
    rows = np.flatnonzero(table["pod"] == "non_elective")
    np.testing.assert_allclose(cov.to_numpy()[np.ix_(rows, rows)], err.T @ err / len(err), rtol=1e-12)
    # pods are independent blocks
    other = np.flatnonzero(table["pod"] == "ae")
    assert not cov.to_numpy()[np.ix_(rows, other)].any()
    np.testing.assert_allclose(table["std_error"], np.sqrt(np.diag(cov.to_numpy())))


def test_a_month_observed_in_full_has_no_completion_error(sample_inputs):
    """Where observed >= expected the completeness is 1, nothing is added and its row of the covariance is zero:
    the sample up to 2007-09, before the planted lag, is complete (about half its pods' months come out at 1)."""
    months = panel._window_months(sample_inputs)
    A, R, pods = panel._activity_and_referrals(sample_inputs, months)
    table, cov = panel._completeness_arrays(A[..., :-6], R[..., :-6], list(pods), list(months[:-6]), 3, 12)
    full = (table["completeness"] == 1.0).to_numpy()
    assert full.any() and not full.all()
    assert not cov[full].any() and not cov[:, full].any()
    assert (table.loc[full, "std_error"] == 0).all() and (table.loc[~full, "std_error"] > 0).all()


def test_short_windows_fall_back_to_the_poisson_covariance_by_hand(sample_inputs):
    """Fewer than MIN_BACKTESTS complete origins: the Poisson covariance, here the emergency pod's by hand:
    Var log E_m = 1/T_(m-12) + 1/S_ref + 1/S_prev (+ late arrivals (E - O) / E^2 on the diagonal)."""
    months = panel._window_months(sample_inputs)[21:]             # 2005-01 to 2008-03: 39 months, 10 origins
    A, R, pods = panel._activity_and_referrals(sample_inputs, panel._window_months(sample_inputs))
    A, R = A[..., 21:], R[..., 21:]
    table, cov = panel._completeness_arrays(A, R, list(pods), list(months), 3, 12)
    assert months[0] == "2005-01" and (table["error_basis"] == "poisson").all() and (table["backtests"] == 10).all()
    tot = A[:, :, list(pods).index("ae"), :].sum(axis=(0, 1))
    M = tot.size
    lag, refm = np.arange(M - 3, M), np.arange(M - 15, M - 3)
    S_ref, S_prev = tot[refm].sum(), tot[refm - 12].sum()
    E = tot[lag - 12] * S_ref / S_prev
    O = tot[lag]
    # each lagged month's year-earlier count is also in the reference sum (the windows are 12 months apart), so
    # its gradient and the reference sum's share it: 1/S_ref from each side, plus the sums' own 1/S_ref + 1/S_prev
    assert np.isin(lag - 12, refm).all() and not np.isin(refm, refm - 12).any()
    hand = np.diag(1 / tot[lag - 12] + (E - O) / E ** 2) + 3 / S_ref + 1 / S_prev
    rows = np.flatnonzero(table["pod"] == "ae")
    np.testing.assert_allclose(cov[np.ix_(rows, rows)], hand, rtol=1e-10)


def test_sample_completed_totals_are_within_their_errors_of_the_planted_completeness(comp, sample_truth):
    """The generator thinned the last three months by known factors: the estimated factors' errors, in their own
    standard errors, look standard normal (none beyond 3.5, root mean square 0.6 to 1.6 over the 15 totals). With
    Poisson errors alone (the expectation's noise and the records to arrive) follow-up outpatients would be 6
    standard errors out: the backtest carries the method's own error (activity per referral moves)."""
    table, _ = comp
    truth = table["month"].map(sample_truth["completeness"]).to_numpy(dtype=float)
    z = np.log(table["completeness"].to_numpy() / truth) / table["std_error"].to_numpy()
    assert np.abs(z).max() < 3.5
    assert 0.6 < np.sqrt(np.mean(z ** 2)) < 1.6


def _pct_lines(inputs, table: pd.DataFrame) -> pd.DataFrame:
    cells = decomposition.spend_cells(inputs, years=[BASE, *YEARS], completeness=table)
    parts = decomposition.decompose(cells, BASE, YEARS, method="shapley")
    g = parts.groupby("financial_year")[[*at.FACTORS, "change"]].sum()
    out = {line: g[list(fs)].sum(axis=1) for line, fs in at.LINE_FACTORS.items()}
    return pd.DataFrame({**out, "change": g["change"]})


@pytest.mark.slow
def test_line_gradients_equal_finite_differences_of_the_accounting(sample_inputs, comp, consortia):
    """An elective and an emergency total: the accounting redone from the inputs with the completeness moved by
    +-1e-5 gives each PCT line's derivative to 1e-6 (the provider's pooled ratios and the cell's local variation
    included)."""
    table, _ = comp
    cells = decomposition.spend_cells(sample_inputs, years=[BASE, *YEARS], completeness=table, lagged=True)
    lagged = delta.lag_matrix(cells, table)
    plain = cells.drop(columns=[c for c in cells.columns if c.startswith("lagged_")])
    grads, _, _ = delta.completion_gradients(plain, lagged, BASE, YEARS, "shapley", {"consortium": consortia})
    for q in (np.flatnonzero(table["pod"] == "followup_op")[1], np.flatnonzero(table["pod"] == "non_elective")[2]):
        fd = (_pct_lines(sample_inputs, _perturbed(table, q, H))
              - _pct_lines(sample_inputs, _perturbed(table, q, -H))).loc["2007/08"] / (2 * H)
        g = grads[(grads["level"] == "pct") & (grads["q"] == q) & (grads["financial_year"] == "2007/08")]
        g = g.set_index("line")["gradient"].reindex(fd.index).fillna(0.0)
        np.testing.assert_allclose(g.to_numpy(), fd.to_numpy(), rtol=1e-6, atol=1e-3 * np.abs(fd).max())
        assert np.abs(fd).max() > 1e5           # the lagged months matter
        assert not grads[(grads["q"] == q) & (grads["financial_year"] != "2007/08")]["gradient"].any()


@pytest.mark.slow
def test_savings_gradients_equal_finite_differences_of_the_valuation(sample_inputs, comp):
    """The cost per referral recomputed with the completeness moved: its derivative (to 1e-8 GBP) and every
    target's and practice's saving valued at it, in one fit (to 1e-9 relative)."""
    table, cov = comp
    cost = panel.cost_per_referral(sample_inputs, completeness=table)
    grads = completion.cost_gradients(sample_inputs, table, cov)
    q = int(np.flatnonzero(table["pod"] == "followup_op")[2])
    assert f"{completion.VALUE_PREFIX}{q}" in grads
    up, down = (panel.cost_per_referral(sample_inputs, completeness=_perturbed(table, q, s))["cost_per_referral"]
                for s in (H, -H))
    fd_cost = (up.to_numpy() - down.to_numpy()) / (2 * H)
    np.testing.assert_allclose(grads[f"{completion.VALUE_PREFIX}{q}"].to_numpy(), fd_cost, atol=1e-6)
    tab = pd.concat([cost, grads, pd.DataFrame({"up": up.to_numpy(), "down": down.to_numpy()})], axis=1)
    act = causal.practice_action(panel.referral_panel(sample_inputs), tab, values=[*grads.columns, "up", "down"])
    v = act.valued.set_index(["value", "target", "unit", "financial_year"])["savings"]
    fd = (v.xs("up") - v.xs("down")) / (2 * H)
    np.testing.assert_allclose(v.xs(f"{completion.VALUE_PREFIX}{q}").reindex(fd.index), fd, rtol=1e-6,
                               atol=1e-6 * float(np.abs(fd).max()))
    assert float(np.abs(fd).max()) > 1e3
    assert set(v.xs("up").index.get_level_values("target")) >= {"pct", "practice"}


def test_hand_case_of_one_a_and_e_cell(ae_cells):
    """One practice's A&E at one provider, 1,200 attendances at GBP 110 in 2007/08 of which 300 in a month completed
    at 0.6: the change line moves by 300 x 110 per unit log change of the completed total; the cell is the whole
    pod-month, so the late records' thinning cannot move it (its completed count is the completed total)."""
    cells = ae_cells({"2004/05": 1000.0, "2007/08": 1200.0}, {"2004/05": 100.0, "2007/08": 110.0})
    cells["lagged_0"] = [0.0, 300.0]
    table = pd.DataFrame({"pod": ["ae"], "month": ["2008-03"], "completeness": [0.6]})
    lagged = delta.lag_matrix(cells, table)
    assert lagged.shape[1] == 1 and lagged.sum() == 300.0
    grads, thin, _ = delta.completion_gradients(cells.drop(columns="lagged_0"), lagged, "2004/05", ["2007/08"],
                                                completeness=np.array([0.6]))
    g = grads[(grads["level"] == "pct") & (grads["line"] == "change")]
    assert g["gradient"].tolist() == [pytest.approx(300 * 110.0, rel=1e-12)]
    assert thin.empty


def test_hand_case_of_two_a_and_e_cells_sharing_a_month(ae_cells):
    """Two practices' A&E, 100 and 200 of the completed month's 300 attendances, at GBP 110 and 90: the thinning
    moves the PCT's change by how the 300 are shared, Var = k (100 (110 - m)^2 + 200 (90 - m)^2) with k = 0.4/0.6 and
    m = (100 x 110 + 200 x 90) / 300; practice P1's own change line (gradient 110 on its records, 0 on P2's) by
    k (100 (110 - m1)^2 + 200 m1^2), m1 = 100 x 110 / 300."""
    one = ae_cells({"2004/05": 1000.0, "2007/08": 1200.0}, {"2004/05": 100.0, "2007/08": 110.0})
    two = ae_cells({"2004/05": 1500.0, "2007/08": 1800.0}, {"2004/05": 80.0, "2007/08": 90.0}).assign(practice_code="P2")
    cells = pd.concat([one, two], ignore_index=True)
    cells["lagged_0"] = [0.0, 100.0, 0.0, 200.0]
    table = pd.DataFrame({"pod": ["ae"], "month": ["2008-03"], "completeness": [0.6]})
    grads, thin, _ = delta.completion_gradients(cells.drop(columns="lagged_0"), delta.lag_matrix(cells, table),
                                                "2004/05", ["2007/08"], completeness=np.array([0.6]))
    k, m, m1 = 0.4 / 0.6, (100 * 110 + 200 * 90) / 300, 100 * 110 / 300
    v = thin[thin["line"] == "change"].set_index(["level", "unit"])["variance"]
    assert v[("pct", "PCT")] == pytest.approx(k * (100 * (110 - m) ** 2 + 200 * (90 - m) ** 2), rel=1e-9)
    assert v[("practice", "P1")] == pytest.approx(k * (100 * (110 - m1) ** 2 + 200 * m1 ** 2), rel=1e-9)


@pytest.fixture(scope="module")
def result(sample_inputs):
    return at.run(sample_inputs, at.Params())


@pytest.mark.slow
def test_intervals_add_the_completion_variance_and_the_unexplained_its_covariance(result):
    """Every line's standard error is its sampling and completion parts in quadrature; the saving's too; the
    unexplained rest's half-width is z sqrt(Var demand + Var saving + 2 Cov), the covariance from the completion
    parts of the demand line, the saving and their sum."""
    iv = result.intervals
    np.testing.assert_allclose(iv["std_error"], np.hypot(iv["std_error_sampling"], iv["std_error_completion"]))
    assert (iv.loc[iv["financial_year"] == "2007/08", "std_error_completion"] > 0).all()
    assert (iv.loc[iv["financial_year"] != "2007/08", "std_error_completion"] == 0).all()   # no lagged month
    ag = result.action.aggregates
    pct = ag[(ag["target"] == "pct") & (ag["financial_year"] == "2007/08")].iloc[0]
    assert pct["std_error_completion"] > 0
    assert pct["std_error"] ** 2 == pytest.approx(max(pct["std_error_model"], pct["std_error_cluster"]) ** 2
                                                  + pct["std_error_completion"] ** 2, rel=1e-12)
    c = result.completion.set_index(["level", "unit", "financial_year", "quantity"])["std_error"]
    led = result.ledger.set_index(["level", "unit", "financial_year"])
    row = led.loc[("pct", "PCT", "2007/08")]
    z = 1.959963984540054
    dem = iv[(iv["level"] == "pct") & (iv["financial_year"] == "2007/08") & (iv["line"] == "demand")].iloc[0]
    cov = (c[("pct", "PCT", "2007/08", "unexplained")] ** 2 - c[("pct", "PCT", "2007/08", "demand")] ** 2
           - c[("pct", "PCT", "2007/08", "practice_action_savings")] ** 2) / 2
    assert cov != 0
    half = z * np.sqrt(dem["std_error"] ** 2 + pct["std_error"] ** 2 + 2 * cov)
    assert (row["unexplained_ci_high"] - row["unexplained"]) == pytest.approx(half, rel=1e-9)


def test_no_lag_no_completion_error(sample_inputs):
    """lag_months 0: nothing is completed, no derivative columns, the intervals are the sampling ones."""
    table, cov = panel._completeness(sample_inputs, 0, 12)
    assert table.empty and cov.shape == (0, 0)
    assert completion.cost_gradients(sample_inputs, table, pd.DataFrame(cov)).shape[1] == 0
