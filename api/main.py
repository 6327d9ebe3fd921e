"""The gateway application."""

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.json_body import JsonBodyMiddleware
from api.routes import (
    catalog,
    eachlabs,
    fal_queue,
    files,
    files_api,
    health,
    openai_images,
    predictions,
    stream,
    webhooks,
)


def create_app() -> FastAPI:
    app = FastAPI(
        title="SD3.5 Medium render farm",
        summary="Replicate-compatible prediction API for Stable Diffusion 3.5 Medium on your own GPUs.",
        version="0.1.0",
    )
    install_error_handlers(app)
    app.add_middleware(JsonBodyMiddleware)
    app.include_router(predictions.router)
    app.include_router(stream.router)
    app.include_router(catalog.router)
    app.include_router(health.router)
    app.include_router(files.router)
    app.include_router(webhooks.router)
    app.include_router(openai_images.router)
    app.include_router(eachlabs.router)
    # Last: fal's /{owner}/{app} routes (their owner never matches v1 or files).
    app.include_router(fal_queue.router)
    app.include_router(files_api.router)
    return app


app = create_app()
