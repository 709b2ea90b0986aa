"""Funnel limit lines in long form, for plotting (the plot itself is :func:`pbc_analysis.publish.figures.plot_funnel`).

References
----------
PHEindicatormethods v2.1.0 (``calculate_funnel_limits``) and FunnelPlotR v0.6.0 (its limits lookup), whose tables
:func:`funnel_lines` reads.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from pbc_analysis.methods.funnel.overdispersion import USED_COLUMNS

__all__ = ["funnel_lines"]

_LINE_SPECS = {  # PHE column stem -> (level, bound)
    "lower_2s": ("95%", "lower"), "upper_2s": ("95%", "upper"),
    "lower_3s": ("99.8%", "lower"), "upper_3s": ("99.8%", "upper"),
}


def funnel_lines(limits: pd.DataFrame) -> pd.DataFrame:
    """Limit lines in long form (``x, value, level, bound``) from either kind of limits table.

    Accepts :func:`funnel_limits` output (proportion: x = ``Population``; ratio: x = the expected
    events of each line; rate: x = the annual population of each line) or the ``limits`` table of
    :class:`FunnelResult` (x = ``denominator``, the limits in use).

    Parameters
    ----------
    limits : pandas.DataFrame
        :func:`pbc_analysis.methods.funnel.phe.funnel_limits` output or :attr:`FunnelResult.limits`.

    Returns
    -------
    pandas.DataFrame
        ``x, value, level, bound`` (finite points only), for
        :func:`pbc_analysis.publish.figures.plot_funnel`.

    References
    ----------
    PHEindicatormethods v2.1.0 and FunnelPlotR v0.6.0 (the two limit tables).
    """
    frames = []
    if "lower95" in limits.columns:
        for col, (level, bound) in zip(USED_COLUMNS, [("95%", "lower"), ("95%", "upper"),
                                                      ("99.8%", "lower"), ("99.8%", "upper")]):
            frames.append(pd.DataFrame({"x": limits["denominator"], "value": limits[col],
                                        "level": level, "bound": bound}))
    else:
        for stem, (level, bound) in _LINE_SPECS.items():
            if "Population" in limits.columns:
                x = limits["Population"]
            elif f"{stem}_exp_events" in limits.columns:
                x = limits[f"{stem}_exp_events"]
            elif f"{stem}_population_1_year" in limits.columns:
                x = limits[f"{stem}_population_1_year"]
            else:
                raise ValueError("limits table not recognised: expected funnel_limits() or "
                                 "funnel_overdispersion().limits columns")
            frames.append(pd.DataFrame({"x": x, "value": limits[f"{stem}_limit"], "level": level,
                                        "bound": bound}))
    out = pd.concat(frames, ignore_index=True)
    return out[np.isfinite(out["x"].to_numpy(dtype=float)) & np.isfinite(out["value"].to_numpy(dtype=float))]
