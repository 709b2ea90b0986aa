"""ingest: event-level extracts (SUS/HES outpatients, admitted care, A&E, e-RS referrals, GP registrations, practice
reference, prices) to the analysis tables of docs/data_dictionary.md, with the row-level work in Ibis on DuckDB.

A layer between ``data`` and ``synth``: it imports only ``core`` and ``data``. Modules:

- ``ingest/columnmap``  Column maps: the canonical fields of every source kind (:data:`FIELDS`) and the YAML map from
  a file's columns to them.
- ``ingest/engine``  The embedded engine: DuckDB through Ibis, with its memory limit, spill directory and threads as
  settings.
- ``ingest/sources``  Reading one extract through its column map: canonical field names, normalised types, coded
  fields as categories.
- ``ingest/hospital``  The hospital event rules: outpatient appointments, admitted-care episodes and A&E attendances
  -> activity.
- ``ingest/referrals``  GP referrals: from an e-RS-style referral extract, or derived from first outpatient
  attendances.
- ``ingest/reconcile``  The reconciliation table: for every source, rows and cost read = aggregated + excluded (by
  reason).
- ``ingest/params``  The ingest settings (:class:`IngestParams`): typed, defaults in one place, every problem listed
  at once.
- ``ingest/run``  The ingest orchestrator: extracts -> validated analysis tables (Parquet), reconciliation and
  manifest.
- ``ingest/practices``  The practice reference (epraccur-like), the local practice attributes and the succession table
  -> the ``practices`` table and the status of every practice code the events may carry.
- ``ingest/registrations``  GP registration snapshots (quinary age, by sex) -> the ``population`` table: the list at
  the start of every month of the window, for every included practice, 19 age bands x 2 sexes (dense).
- ``ingest/prices``  The price table (payment-scheme-like, long) -> the price lookup for missing costs and the
  ``tariff`` table, a fixed-weight (Laspeyres) price index by specialty, point of delivery and financial year.
- ``ingest/reference``  The providers and specialties tables from the provider reference and the treatment-function
  list, and the shared helpers of the reference sources (output tables in data-dictionary form, problems with rows).

Data dictionary of the extracts: docs/extracts.md (and docs/extracts_reference.md for the reference sources).
"""
