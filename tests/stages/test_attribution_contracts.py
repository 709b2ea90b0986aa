"""Savings at providers on block or aligned-payment contracts are notional: the setting, the interval, the words."""

from __future__ import annotations

import pytest

from pbc_analysis.stages import attribution as at


@pytest.fixture(scope="module")
def runs(sample_inputs):
    providers = sorted(sample_inputs.activity["provider_code"].astype(str).unique())
    one = at.run(sample_inputs, at.Params(block_contracts=[providers[0]], inference="model"))
    every = at.run(sample_inputs, at.Params(block_contracts=providers, inference="model"))
    return providers, one, every


def test_notional_savings_are_part_of_the_pct_saving(runs):
    """One provider's notional saving lies between 0 and the PCT's; with every provider listed it is the PCT's."""
    providers, one, every = runs
    h1, he = one.headline(), every.headline()
    pct = h1["practice_action_savings"]["estimate"]
    n1 = h1["notional"]
    assert n1["block_contracts"] == [providers[0]]
    assert 0 < n1["savings"]["estimate"] < pct and n1["savings"]["ci_low"] < n1["savings"]["estimate"] < n1["savings"]["ci_high"]
    assert n1["share_of_savings"] == pytest.approx(n1["savings"]["estimate"] / pct, abs=1e-4)
    assert he["notional"]["savings"]["estimate"] == pytest.approx(he["practice_action_savings"]["estimate"], rel=1e-9)
    assert he["notional"]["share_of_savings"] == pytest.approx(1.0)


def test_notional_text_moves_with_the_setting(runs):
    providers, one, _ = runs
    text = one.describe()
    assert f"Savings at {providers[0]} (block or aligned-payment contracts) are notional: GBP" in text
    assert "only the rest is cash" in text
    none = at.notional_text({"block_contracts": []})
    assert "valued as cash: every provider is taken to be paid activity x price" in none and "notional" in none


def test_unknown_block_contract_provider_is_refused(sample_inputs):
    with pytest.raises(ValueError, match=r"block_contracts: XYZ not among the activity's providers"):
        at.run(sample_inputs, at.Params(block_contracts=["XYZ"]))
