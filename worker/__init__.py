"""The GPU worker: Celery app, warm SD3.5 pipeline, and the claim → predict → upload → finalize runner."""
