"""The farm's shared domain: records, lifecycle, catalog, settings, storage. No torch, FastAPI or Celery."""
