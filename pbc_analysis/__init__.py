"""pbc_analysis: reproducible evaluation of practice based commissioning (PBC).

Modules, one per concept:

- ``paths``      project-root anchored paths
- ``data``       the input data model, validated loading (pandera schemas)
- ``synth``      a synthetic PCT with planted effects and the ground truth
- ``quality``    data-quality summaries (completeness, consistency)
- ``results``    writing tidy, byte-stable result tables and results.json sections
- ``disclosure`` statistical disclosure control for published counts
- ``report``     rendering the HTML report (Quarto, nbconvert fallback)
- ``run``        the papermill runner, config validation, manifest and verify
- ``cli``        the ``pbc`` command
"""

__version__ = "0.1.0"
