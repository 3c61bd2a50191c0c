"""Dagster wiring. Thin: each asset reads its context, calls ``core``, and reports metadata."""
