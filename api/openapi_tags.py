"""The groups of the interactive docs at ``/docs``: the native API first, then each front door."""

from typing import Any

NATIVE = "Replicate's HTTP API (the native surface; the `replicate` client works with `base_url` set to this farm)."

OPENAPI_TAGS: list[dict[str, Any]] = [
    {"name": "predictions", "description": f"Create, poll, list, stream and cancel predictions. {NATIVE}"},
    {"name": "models", "description": "The catalog: each model's input JSON schema, defaults and price."},
    {"name": "files", "description": "Upload files to use as inputs (`image`); download stored outputs."},
    {"name": "webhooks", "description": "Webhook signing secrets (Standard Webhooks) and delivery."},
    {"name": "usage", "description": "Your key's predictions, GPU-seconds, cost and price over time."},
    {
        "name": "openai",
        "description": "Front door for OpenAI's images API: `openai.OpenAI(base_url=FARM + '/v1', api_key=KEY)`.",
    },
    {
        "name": "fal",
        "description": "Front door for fal's queue API (`fal_client` with FAL_QUEUE_RUN_HOST pointed at the farm).",
    },
    {"name": "eachlabs", "description": "Front door for the Eachlabs API (`X-API-Key`; numbers may be strings)."},
    {"name": "health", "description": "For operators: liveness, readiness and Prometheus metrics."},
    {"name": "admin", "description": "For admin keys only: create, list, change and revoke keys; any key's usage."},
]
