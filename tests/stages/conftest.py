"""Fixtures shared by the attribution tests of this directory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest


@pytest.fixture(scope="session")
def consortia(sample_inputs):
    """The sample's consortium of every practice (the group level of the accounting lines)."""
    return sample_inputs.practices.set_index("practice_code")["consortium"].astype(str).to_dict()


@pytest.fixture(scope="session")
def ae_cells():
    """A builder of spend cells for a hand case: one practice's A&E attendances at one provider in 2004/05 and
    2007/08, cost = attendances x unit cost (``ae_cells(activity, unit_cost)``, each ``{year: value}``)."""
    def build(activity: dict[str, float], unit_cost: dict[str, float]) -> pd.DataFrame:
        rows = []
        for fy in ("2004/05", "2007/08"):
            a = activity[fy]
            rows.append({"practice_code": "P1", "provider_code": "R1", "specialty_code": "180", "pod": "ae",
                         "financial_year": fy, "list": 10_000.0, "weighted_list": 10_000.0, "referrals": np.nan,
                         "first": np.nan, "activity": a, "cost": a * unit_cost[fy], "tariff": 100.0})
        return pd.DataFrame(rows)

    return build
