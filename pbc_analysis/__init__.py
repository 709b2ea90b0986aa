"""pbc_analysis: reproducible evaluation of practice based commissioning (PBC).

Layers, imports only downward (core -> data -> ingest -> synth -> methods -> stages -> publish -> pipeline; checked by
tests/test_layers.py). Every module, by layer:


core: the rules every layer shares
- ``core/calendar``  The one implementation of month, quarter and financial-year arithmetic
- ``core/checks``  Checks of analysis arguments: one helper per kind, each returning the problem as text (or raising)
- ``core/names``  Safe names and the names of a run directory's markers: the core rules every layer shares
- ``core/labels``  Codes in words: measures and points of delivery ("follow-up outpatient attendances", never a code), specialties
- ``core/numbers``  Numbers in words: p-values printed one way in every sentence and table
- ``core/params``  Typed parameters of an analysis stage: one frozen dataclass per stage, the one source of every setting
- ``core/paths``  Project-root anchored paths
- ``core/strict_yaml``  The YAML reader of configs and column maps: plain data only, every refused construct named with its key and line

data: the input data model and validated loading
- ``data/checks``  A table under validation (`_Ctx`) and its element-wise rules (pandera, lazily, column by column)
- ``data/files``  Finding the table files of a data directory, and every way a table can be present but unreadable
- ``data/inputs``  Validated inputs: `Inputs`, `load_inputs` (find, read and validate every table) and `validate`
- ``data/plausibility``  Plausibility checks: values that are valid numbers but not believable
- ``data/problems``  Problems: one breach of the data dictionary (`Problem`), the error listing them all (`DataValidationError`) and the helpers that word th
- ``data/read``  Reading one table file (CSV, CSV.gz or Parquet) into a frame of the schema's types
- ``data/rules``  The validation rules beyond the element-wise ones: keys, references, the window and the table-level rules
- ``data/store``  The validated tables of a run, kept for its notebooks: validated once by ``pbc run``, read by every stage
- ``data/schema``  The input data model: vocabularies, code patterns and the pandera schema of every table
- ``data/window``  The analysis window (`Window`) and the data window of a data directory: the months every monthly table covers (``start_month``/``end_month``

ingest: event-level extracts to the analysis tables, row-level work in Ibis on DuckDB
- ``ingest/columnmap``  Column maps: the canonical fields of every source kind (`FIELDS`) and the YAML map from a file's columns to them
- ``ingest/engine``  The embedded engine: DuckDB through Ibis, with its memory limit, spill directory and threads as settings
- ``ingest/spark``  The ingest on Spark (``engine: spark``): the session, reading extracts with their row numbers, the date parser, materialising
- ``ingest/sources``  Reading one extract through its column map: canonical field names, normalised types, coded fields as categories
- ``ingest/hospital``  The hospital event rules: outpatient appointments, admitted-care episodes and A&E attendances -> activity
- ``ingest/referrals``  GP referrals: from an e-RS-style referral extract, or derived from first outpatient attendances
- ``ingest/reconcile``  The reconciliation table: for every source, rows and cost read = aggregated + excluded (by reason)
- ``ingest/params``  The ingest settings (`IngestParams`): typed, defaults in one place, every problem listed at once
- ``ingest/run``  The ingest orchestrator: extracts -> validated analysis tables (Parquet), reconciliation and manifest
- ``ingest/practices``  The practice reference (epraccur-like), the local practice attributes and the succession table -> the ``practices`` table and the
- ``ingest/registrations``  GP registration snapshots (quinary age, by sex) -> the ``population`` table: the list at the start of every month of the window,
- ``ingest/prices``  The price table (payment-scheme-like, long) -> the price lookup for missing costs and the ``tariff`` table, a fixed-weight (Laspeyres)
- ``ingest/reference``  The providers and specialties tables from the provider reference and the treatment-function list, and the shared helpers of the

synth: a synthetic PCT with planted effects, in the real data's formats, and its truth
- ``synth/activity``  Hospital activity of the synthetic PCT: expected counts, draws, tariff, the activity cube, data lag and cost
- ``synth/budgets``  The synthetic PCT's indicative budgets (historic rule) and its high-cost patients (the risk pool's cases)
- ``synth/calibration``  Calibration of the synthetic PCT: age-sex pyramid, specialties, need curves, names (not drawn)
- ``synth/contract``  The file contract of the synthetic PCT (``docs/data_dictionary.md``): tables, their columns, keys and codes
- ``synth/generator``  The generator: `generate` runs the named steps in order and returns the tables and the ground truth
- ``synth/options``  ``pbc synth``'s flags, generated from the fields of `pbc_analysis.synth.params.SynthParams`
- ``synth/params``  The generator's parameters: one frozen dataclass, `SynthParams`, the one source of every setting
- ``synth/tables``  The synthetic PCT's tables as data frames in the data dictionary's format (one function per group of tables)
- ``synth/truth``  The ground truth of the synthetic PCT (``truth`` / ``ground_truth.json``)
- ``synth/world``  The synthetic PCT's structure: window, providers, practices, consortia, engagement, practice-provider pairs, lists
- ``synth/events``  ``pbc synth --events``: the synthetic PCT as event-level extracts, with the dirt the ingest rules handle
- ``synth/national``  ``pbc synth --national``: a synthetic nation of commissioners, each a synthetic PCT with its own known answer
- ``synth/events_reference``  The reference extracts of ``pbc synth --events``: registrations, practice reference, attributes, succession, providers, prices
- ``synth/write``  Writing the synthetic PCT in the real-data formats (``docs/data_dictionary.md`` is the contract)

methods: the statistical methods, each in one place; nothing here knows about notebooks or runs
- ``methods/did/``  Difference-in-differences for staggered adoption: TWFE, Callaway-Sant'Anna, Bacon decomposition, PPML
- ``methods/did/aggregate``  Aggregations of group-time effects (`aggregate`, as ``did::aggte``), relative and total effects
- ``methods/did/attgt``  Callaway and Sant'Anna group-time average treatment effects (`att_gt`) and the pre-test
- ``methods/did/bacon``  Goodman-Bacon decomposition of the static two-way fixed-effects estimate into its 2x2 comparisons
- ``methods/did/inference``  Influence-function inference for group-time effects: the multiplier bootstrap and the weights' term
- ``methods/did/panel``  Checks of a difference-in-differences panel, shared by every estimator of `pbc_analysis.methods.did`
- ``methods/did/projections``  Alternating projections: the within transformation over any number of fixed-effect dimensions
- ``methods/did/twfe``  Two-way fixed effects: the static OLS regression (`twfe`) and its Poisson version (`fepois`)
- ``methods/disclosure``  Statistical disclosure control for counts published below national level
- ``methods/funnel/``  Funnel plots: control limits, over-dispersion and outliers for practice-level indicators
- ``methods/funnel/common``  What the funnel methods share: their choice types, the normal quantiles, R's rounding and the input checks
- ``methods/funnel/grouped``  Over-dispersed funnels of standardised ratios for many funnels at once (one per group), vectorised with numpy
- ``methods/funnel/lines``  Funnel limit lines in long form, for plotting (the plot itself is `pbc_analysis.publish.figures.plot_funnel`)
- ``methods/funnel/overdispersion``  Over-dispersed funnels for one indicator: z-scores, trimming, phi, tau^2, adjusted limits and outliers
- ``methods/funnel/phe``  PHE / Fingertips funnels: control limits and significance as PHEindicatormethods v2.1.0 computes them
- ``methods/indicators/``  Public-health indicator methods: crude rates, proportions, means, DSRs and ISRs with confidence limits
- ``methods/indicators/frames``  The DataFrame plumbing the indicators share: required columns, numeric checks, strict grouped sums
- ``methods/indicators/limits``  Confidence limits on arrays: Byar's and exact Poisson limits for counts, Wilson limits for proportions
- ``methods/indicators/rates``  Crude rates, proportions and means with their confidence limits, as PHEindicatormethods v2.1.0
- ``methods/indicators/standardised``  Directly and indirectly standardised rates and ratios, as PHEindicatormethods v2.1.0
- ``methods/its``  Interrupted time series (ITS): segmented Poisson, quasi-Poisson and negative binomial regression
- ``methods/ppml``  Poisson pseudo-maximum likelihood (PPML) with high-dimensional fixed effects: the one Poisson FE engine
- ``methods/spc/``  Statistical process control (SPC) for monthly monitoring: XmR, u and p charts
- ``methods/spc/charts``  XmR, u and p charts with the Making Data Count rules, for many series at once
- ``methods/spc/rules``  SPC constants and the Making Data Count pattern rules: runs on one side of the mean, trends, two in three

stages: one analysis stage per notebook: a typed ``Params``, ``run(inputs, params)`` and a ``Result`` with ``tables()``, ``headline()``, ``describe()``
- ``stages/attribution/``  Savings attribution (notebook 04): who saved what when hospital spend changed, and how the savings are shared
- ``stages/attribution/causal``  Causal attribution: referrals avoided and savings from practice action, by Poisson imputation
- ``stages/attribution/completion``  The completeness factors' uncertainty in the attribution's intervals: gradients of every saving and line
- ``stages/attribution/common``  Shared pieces of the savings attribution: the spend identity's vocabulary, codes and the population arrays
- ``stages/attribution/bootstrap``  Sampling uncertainty of the accounting lines: a Poisson parametric bootstrap of the counts, streamed, flat in memory
- ``stages/attribution/delta``  Sampling uncertainty of the accounting lines by the delta method: exact gradients by complex step, no Monte Carlo error
- ``stages/attribution/decomposition``  Exact accounting of a change in spend: the spend identity's cells and factors, LMDI-I and Shapley
- ``stages/attribution/ledger``  The ledger (who saved what, line by line), the disputed provider change, and sharing the resources freed up
- ``stages/attribution/panel``  Inputs of the attribution's models: completeness of the latest months, the referral panel, the cost of a referral
- ``stages/attribution/precision``  How precise can the practice-action saving be? Its standard error against the precision floor
- ``stages/attribution/params``  The settings of the savings attribution (notebook 04): one typed source, derived from the data where they follow
- ``stages/attribution/safety``  The safety check before any saving is paid: did emergencies rise where referrals fell?
- ``stages/attribution/stage``  The savings attribution stage: one entry point, `run`, from validated inputs and `Params` to the results
- ``stages/benchmark/``  Fair benchmarking of practices: standardised ratios, funnels, peer positions, flags, scorecard (notebook 02)
- ``stages/benchmark/adjusted``  Need-adjusted ratios for any table of units with a count, a population and a deprivation score
- ``stages/benchmark/cube``  The count cube of benchmarking: validated inputs reduced once to arrays over practices, series and months
- ``stages/benchmark/expected``  Expected counts and indirectly standardised ratios of practices (benchmarking steps 2 and 3)
- ``stages/benchmark/flagging``  Flags and the scorecard of practices (benchmarking steps 5 and 6)
- ``stages/benchmark/national``  National reference rates calibrated to every practice in the engine, and the national benchmark of every practice
- ``stages/benchmark/funnels``  Funnels of practices' standardised ratios (benchmarking step 4): z-scores, over-dispersion, limits, positions
- ``stages/benchmark/params``  Settings of the benchmarking stage (notebook 02), the one source of each; and the ones notebook 04 shares
- ``stages/benchmark/peers``  Peer positions of practices: percentiles, deciles, change and trend, and the decile fan of monthly ratios
- ``stages/benchmark/similar``  Similar practices (RightCare's "similar 10"), the opportunity at their median and best quartile, every practice's monthly SPC
- ``stages/benchmark/stage``  The benchmarking stage in one call: `run` (notebook 02), its `Result`, and notebook 04's gate
- ``stages/budgets/``  Indicative budgets: historic budgets, fair shares, distance from target, pace of change, statements
- ``stages/budgets/completeness``  Completeness of the latest months: the factors (recorded / eventual) that budgets and monitoring divide by
- ``stages/budgets/costs``  Activity and cost by practice at the target year's prices: cells, completeness, re-costing, annual costs
- ``stages/budgets/lists``  Registered and age-sex weighted lists: cost curves, practice lists, the list growth index
- ``stages/budgets/need``  Fair shares and historic budgets: the need model, its fit, target shares, the check against provided budgets
- ``stages/budgets/pace``  Pace of change: the glide path from historic budgets to fair shares, in whole pence; winners and losers
- ``stages/budgets/params``  The budget-setting stage's settings (notebook 05): one typed field per setting, the rules that derive ``target_year`` and ``as_a...
- ``stages/budgets/stage``  The budget-setting stage's entry point: `run` (settings from `pbc_analysis.stages.budgets.params.Params`) and its `Result`
- ``stages/budgets/statement``  The budget statement and the stage's results: tables, results.json headline, plain-language description
- ``stages/evaluation/``  The referral evaluation (notebook 03): did engaged practices refer less, compared with what?
- ``stages/evaluation/effects``  The referral evaluation's estimates: staggered DiD by specialty, events avoided, estimator comparison, checks
- ``stages/evaluation/panels``  The data the referral evaluation's estimators take: practice-month panels, periods, PCT series
- ``stages/evaluation/params``  Settings of the referral evaluation (notebook 03): the one source of each, its rule when ``"auto"``, its checks
- ``stages/evaluation/stage``  The referral evaluation as one stage: `run` (inputs and `.params.Params` in, `Result` out)
- ``stages/evaluation/truth``  The synthetic PCT's planted engagement effects, and the evaluation's estimates set beside them
- ``stages/facts``  What the validated data say about the settings that follow from them: the facts every ``"auto"`` is derived from
- ``stages/quality``  Data-quality summaries of validated inputs (notebook 01)
- ``stages/risk/``  Financial risk of indicative budgets: the high-cost risk pool, its adequacy, and in-year monitoring
- ``stages/risk/basis``  One budget basis for the risk pool and in-year monitoring, and the choice of threshold and top-slice
- ``stages/risk/forecast``  In-year forecasting: monthly costs, the seasonal profile, run-rate forecasts, their back-test and prediction interval, SPC signal...
- ``stages/risk/monitoring``  In-year monitoring of the target year against its first-year budgets, for practices and consortia
- ``stages/risk/params``  The risk stage's settings (notebook 05): the risk pool, its simulation, and in-year monitoring's triggers
- ``stages/risk/pool``  The high-cost risk pool: charges, the top-slice that funds it, and its adequacy by simulation
- ``stages/risk/stage``  The risk stage's entry point: `run` (settings from `pbc_analysis.stages.risk.params.Params`), its `Result`, and the results: tabl

publish: results, figures, the report and the sendable bundle; reads results only, never recomputes
- ``publish/bundle``  The published bundle: the only part of a run directory that may be sent with a report
- ``publish/figures/``  Every figure, in one theme: tidy tables or method results in, matplotlib Figures out
- ``publish/figures/charts``  Charts of the methods: funnel plots, SPC charts, interrupted time series and event studies
- ``publish/figures/panels``  Data-quality, benchmarking and evaluation panels: tidy DataFrame in, matplotlib Figure out
- ``publish/figures/stages``  Figures of the stages: the savings waterfall, budget distance and glide path, the risk pool and monitoring
- ``publish/figures/theme``  The one figure theme: seaborn whitegrid, a colour-blind-safe palette, fixed fonts and sizes, labels
- ``publish/markdown``  Untrusted text as Markdown that renders exactly as written: never markup, a link, an image, math or code
- ``publish/html_parts``  Escaped HTML pieces of the self-contained pages: cells, tables, numbers
- ``publish/national``  The national summary page of a partitioned run: commissioners' headlines, their funnel, the national benchmark
- ``publish/practice_pages``  A page per practice (funnel positions, spine chart, SPC, savings, budget, payment, similar practices) and their index
- ``publish/practice_charts``  The practice pages' charts as inline SVG: a Fingertips-style spine chart and an XmR chart (higher / lower)
- ``publish/registry``  The registry of everything a run may publish: every column of every result table, and every figure of results.json
- ``publish/report``  Render an executed notebook to ONE self-contained HTML file
- ``publish/report_style``  The report's A4 print stylesheet (every table column on the page) and its table of contents
- ``publish/report_content``  Building blocks of the evaluation report, made only from a run's results
- ``publish/finance``  The budgets a finance director signs: every practice's budget of the target year on one basis, side by side
- ``publish/report_payments``  The payment schedule: every engaged practice's saving, the gates it passed, and what is payable, with reasons
- ``publish/report_summary``  The report's executive summary and verdicts, every sentence computed from the result it speaks of
- ``publish/report_provenance``  The report's provenance and input sections: how to reproduce and verify the run, what was validated
- ``publish/report_sections``  Which of the report's sections a run holds, and the lines that stand in for the others
- ``publish/results``  Tidy, byte-stable result tables, results.json sections and figures in a run directory
- ``publish/workbook``  The finance workbook (``finance.xlsx``): the payment schedule and the budget statements as spreadsheets

pipeline: config, settings derived from the data, the runner, manifest, verify and the ``pbc`` command
- ``pipeline/cli``  The ``pbc`` command
- ``pipeline/compare``  Compare result tables and JSON with a stated tolerance: the one rule the back tests and ``pbc verify`` share
- ``pipeline/config``  The run config: parsed and checked against the notebooks' own ``parameters`` cells before anything runs
- ``pipeline/derive``  Settings that follow from the data: derived, checked against every cross-setting rule, before any notebook runs
- ``pipeline/extracts``  The ingest stage of a run and ``pbc ingest``: event-level extracts to the analysis tables, recorded for audit
- ``pipeline/init``  ``pbc init``: a complete run config for a data directory, every setting written out and explained
- ``pipeline/national``  A national run: ``pbc run`` with ``run: {partition: commissioner}``, one normal run per commissioner, and a summary
- ``pipeline/kernel``  The notebooks' kernel: shut down without an interrupt when no cell is running
- ``pipeline/manifest``  Provenance of a run: file hashes, code version, packages, the inputs a config reads, and the manifest
- ``pipeline/run``  The pipeline runner: validate a config, execute the numbered notebooks with papermill, publish
- ``pipeline/runs_index``  ``reports/index.html``: the runs in a reports directory, and which of them can be trusted
- ``pipeline/supervise``  Worker processes that stop when they are told to, and never outlive the runner
- ``pipeline/verify``  ``pbc verify``: check a published run against its manifest, re-run it from its validated config, compare
"""

__version__ = "0.1.0"
