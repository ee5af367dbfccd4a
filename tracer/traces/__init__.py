"""Traces: the schema table, trace files and how records are stored, comparing and printing traces."""
