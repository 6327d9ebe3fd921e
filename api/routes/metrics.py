"""``GET /metrics``: Prometheus exposition of the farm's figures, computed from Postgres at scrape time."""

import hmac
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Response
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4, CollectorRegistry, generate_latest

from api.deps import SessionDep, SettingsDep, presented_key
from api.metrics import FarmCollector
from models.farm_stats import FinishedTotalsCache, farm_stats

router = APIRouter(tags=["health"])  # operators' endpoints share one docs group


_finished_totals: dict[str, FinishedTotalsCache] = {}


def finished_totals(database_url: str) -> FinishedTotalsCache:
    """This process's running totals of finished predictions, one per database."""
    return _finished_totals.setdefault(database_url, FinishedTotalsCache())


def require_metrics_token(
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
    x_api_key: Annotated[str | None, Header()] = None,
) -> None:
    """With FARM_METRICS_TOKEN set, scrapers must send it as ``Authorization: Bearer <token>``."""
    if not settings.metrics_token:
        return
    presented = presented_key(authorization, x_api_key) or ""
    if not hmac.compare_digest(presented.encode(), settings.metrics_token.encode()):
        raise HTTPException(
            status_code=401,
            detail="GET /metrics needs 'Authorization: Bearer <FARM_METRICS_TOKEN>'.",
            headers={"WWW-Authenticate": "Bearer"},
        )


# Declared before the session: a refused scrape never touches the database.
@router.get("/metrics", dependencies=[Depends(require_metrics_token)], response_class=Response)
def metrics(settings: SettingsDep, session: SessionDep) -> Response:
    """Queue depth, predictions by status, latency histograms, GPU time and cost, webhook attempts, workers."""
    stats = farm_stats(session, finished_totals(settings.database_url), lease_seconds=settings.lease_seconds)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(FarmCollector(stats))
    # The classic text format (0.0.4): what every Prometheus version scrapes.
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_PLAIN_0_0_4)
