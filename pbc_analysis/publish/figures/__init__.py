"""Every figure, in one theme: tidy tables or method results in, matplotlib Figures out.

- :mod:`~pbc_analysis.publish.figures.theme`   the palette, labels and seaborn theme
- :mod:`~pbc_analysis.publish.figures.panels`  data-quality, benchmarking and evaluation panels
- :mod:`~pbc_analysis.publish.figures.charts`  charts of the methods: funnel, SPC, ITS, event study
- :mod:`~pbc_analysis.publish.figures.stages`  savings waterfall, budget distance and glide path, risk pool, monitoring

No figure recomputes an analysis: each draws what a method or stage returned. Saving is
:func:`pbc_analysis.publish.results.save_figure`'s job.
"""

from pbc_analysis.publish.figures.charts import plot_event_study, plot_funnel, plot_its, plot_spc
from pbc_analysis.publish.figures.panels import (
    MEASURE_LABELS,
    completeness_figure,
    decile_fan_figure,
    event_study_grid_figure,
    forest_figure,
    funnel_grid_figure,
    heatmap_figure,
    list_vs_rate_figure,
    monthly_totals_figure,
)
from pbc_analysis.publish.figures.stages import (
    distance_figure,
    glide_path_figure,
    monitoring_figure,
    pool_figure,
    waterfall_figure,
)
from pbc_analysis.publish.figures.theme import PALETTE, POD_LABELS, set_theme

__all__ = [
    "MEASURE_LABELS", "PALETTE", "POD_LABELS", "completeness_figure", "decile_fan_figure", "distance_figure",
    "event_study_grid_figure", "forest_figure", "funnel_grid_figure", "glide_path_figure", "heatmap_figure",
    "list_vs_rate_figure", "monitoring_figure", "monthly_totals_figure", "plot_event_study", "plot_funnel",
    "plot_its", "plot_spc", "pool_figure", "set_theme", "waterfall_figure",
]
