"""The FastAPI gateway: Replicate-shaped prediction API over the farm's job store. No torch here."""
