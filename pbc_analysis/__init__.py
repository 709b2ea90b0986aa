"""pbc_analysis: reproducible evaluation of practice based commissioning (PBC).

Modules, one per concept:

- ``paths``      project-root anchored paths
- ``data``       the input data model, validated loading (pandera schemas)
- ``synth``      a synthetic PCT with planted effects and the ground truth
- ``quality``    data-quality summaries (completeness, consistency)
- ``indicators`` PHE indicator methods: rates, proportions, means, DSR, ISR with confidence limits
- ``funnel``     funnel plot limits and over-dispersion (Spiegelhalter 2005)
- ``spc``        statistical process control (Making Data Count)
- ``benchmark``  fair benchmarking of practices: expected counts, ratios, funnels, flags, scorecard
- ``results``    writing tidy, byte-stable result tables and results.json sections
- ``disclosure`` statistical disclosure control for published counts
- ``report``     rendering the HTML report (Quarto, nbconvert fallback)
- ``run``        the papermill runner, config validation, manifest and verify
- ``cli``        the ``pbc`` command
"""

__version__ = "0.1.0"
