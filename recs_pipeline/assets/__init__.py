"""Dagster assets, one factory per stage family, built per site."""
