"""Core logic: plain Python on DataFrames and sparse matrices; never imports Dagster."""
