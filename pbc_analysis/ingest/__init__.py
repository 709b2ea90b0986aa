"""ingest: event-level extracts (SUS/HES outpatients, admitted care, A&E, GP registrations, practice reference, prices) to the analysis tables, with the row-level work in Ibis on DuckDB."""
