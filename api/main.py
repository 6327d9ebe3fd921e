"""The gateway application."""

from fastapi import FastAPI

from api.errors import install_error_handlers
from api.json_body import JsonBodyMiddleware
from api.routes import catalog, files, health, predictions, stream


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
    return app


app = create_app()
