"""recs_pipeline."""
