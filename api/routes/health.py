"""Liveness and readiness."""

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from kombu.connection import Connection
from sqlalchemy import text

from api.deps import SettingsDep, StorageDep
from models.db import get_engine

router = APIRouter(tags=["health"])

BROKER_TIMEOUT_S = 2.0


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz")
def readyz(settings: SettingsDep, storage: StorageDep) -> JSONResponse:
    """The gateway can reach its database, broker and object store."""
    checks: dict[str, Any] = {}
    try:
        with get_engine(settings.database_url).connect() as connection:
            connection.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:  # any failure means not ready; say which
        checks["database"] = f"error: {error.__class__.__name__}"
    try:
        with Connection(settings.broker_url, connect_timeout=BROKER_TIMEOUT_S) as connection:
            connection.ensure_connection(max_retries=1, timeout=BROKER_TIMEOUT_S)
        checks["broker"] = "ok"
    except Exception as error:
        checks["broker"] = f"error: {error.__class__.__name__}"
    try:
        storage.ping()
        checks["storage"] = "ok"
    except Exception as error:
        checks["storage"] = f"error: {error.__class__.__name__}"
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, "checks": checks})
