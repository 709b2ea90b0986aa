"""pbc_analysis: reproducible evaluation of practice based commissioning (PBC).

Modules, one per concept, by layer (imports only go down the list):

core
- ``paths``          project-root anchored paths
- ``names``          safe names (run names, run ids, notebook names) and run-directory markers

data
- ``data``           the input data model, finding and validated loading of input tables (pandera schemas)
- ``plausibility``   valid but implausible values: rules, thresholds, accepted exceptions
- ``synth``          a synthetic PCT with planted effects and the ground truth

methods and stages
- ``quality``        data-quality summaries (completeness, consistency)
- ``indicators``     PHE indicator methods: rates, proportions, means, DSR, ISR with confidence limits
- ``funnel``         funnel plot limits and over-dispersion (Spiegelhalter 2005)
- ``spc``            statistical process control (Making Data Count)
- ``its``, ``did``   interrupted time series; difference-in-differences and event studies
- ``benchmark``      fair benchmarking of practices: expected counts, ratios, funnels, flags, scorecard
- ``evaluation``     the referral evaluation
- ``attribution``    savings attribution (exact decomposition, Poisson imputation, sharing)
- ``budgets``, ``risk``  budgets from history or fair shares; the risk pool and in-year monitoring

publish
- ``results``        tidy, byte-stable result tables and results.json sections
- ``disclosure``     statistical disclosure control for published counts
- ``publish``        the ``published/`` bundle: the only part of a run that may be sent
- ``plots``, ``report``, ``report_content``, ``markdown``  figures, the HTML report, its text, escaping

pipeline
- ``config``, ``config_yaml``  the run config: plain-data YAML, declared parameter types, literals only
- ``run``, ``supervise``       the papermill runner; worker processes that stop on signals and never outlive it
- ``manifest``, ``compare``, ``verify``  provenance and hashes; the tolerance comparison; ``pbc verify``
- ``runs_index``     reports/index.html of verified runs
- ``cli``            the ``pbc`` command
"""

__version__ = "0.1.0"
