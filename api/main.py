"""The gateway application."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api.access_log import drop_query_strings_from_access_log
from api.body_limit import BodyLimit
from api.errors import install_error_handlers
from api.json_body import JsonBodyMiddleware
from api.openapi_errors import document_errors
from api.openapi_tags import OPENAPI_TAGS
from api.rate_limit import RateLimitHeaders, limiter
from api.routes import (
    admin,
    catalog,
    eachlabs,
    fal_queue,
    files,
    files_api,
    health,
    metrics,
    openai_images,
    playground,
    prediction_webhooks,
    predictions,
    stream,
    usage,
    webhooks,
)
from models.settings import get_settings


@asynccontextmanager
async def lifespan(_: FastAPI) -> AsyncIterator[None]:
    """Before a gateway process's first request, freeze the objects start-up loaded (modules, routes, pools;
    ~160,000) out of the garbage collector's full passes. Under load a pass came every few seconds and walked them
    all, 100-180 ms each on a 2-core VM: 15-20% of a poll's CPU, and a pause for the requests it met. They live as
    long as the process, so nothing collectable is lost once start-up's own garbage is collected first."""
    gc.collect()
    gc.freeze()
    yield


def create_app() -> FastAPI:
    app = FastAPI(
        lifespan=lifespan,
        title="SD3.5 Medium render farm",
        summary="Replicate-compatible prediction API for Stable Diffusion 3.5 Medium on your own GPUs.",
        version="0.1.0",
        description="Try it in the browser at [/](/) (the playground). Authenticate with "
        "`Authorization: Bearer <key>`.",
        openapi_tags=OPENAPI_TAGS,
    )
    install_error_handlers(app)
    drop_query_strings_from_access_log()  # signed output URLs carry their signature in the query
    app.add_middleware(JsonBodyMiddleware)
    app.add_middleware(RateLimitHeaders)
    # Built here, once: `limits` checks its Redis dependency on construction, which is not thread-safe.
    limiter(get_settings().broker_url)
    app.add_middleware(BodyLimit, max_bytes=get_settings().max_request_bytes)  # last added: runs first
    app.include_router(predictions.router)
    app.include_router(stream.router)
    app.include_router(catalog.router)
    app.include_router(health.router)
    app.include_router(metrics.router)
    app.include_router(usage.router)
    app.include_router(admin.router)
    app.include_router(files.router)
    app.include_router(webhooks.router)
    app.include_router(prediction_webhooks.router)
    app.include_router(openai_images.router)
    app.include_router(eachlabs.router)
    app.include_router(playground.router)
    # Last: fal's /{owner}/{app} routes (their owner never matches v1 or files).
    app.include_router(fal_queue.router)
    app.include_router(files_api.router)
    document_errors(app)  # after every route is in
    return app


app = create_app()
