"""The model catalog, with each model's input JSON schema (generated from the validating class)."""

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, HTTPException

from api.deps import CurrentKey
from api.presenter import iso
from models.catalog import MODELS, ModelSpec, find_model

router = APIRouter(prefix="/v1/models", tags=["models"])

# When this build's catalog was defined; versions are immutable, so a fixed date is honest.
CATALOG_DATE = datetime(2026, 11, 22, tzinfo=UTC)
# The Cog schema conventions the version's openapi_schema follows. From Cog 0.3.9 on, streamed
# outputs are marked ``x-cog-array-type: iterator``; the replicate client treats any array output
# of an older version as an iterator and hands back a generator, so this must not be older.
COG_VERSION = "0.16.0+farm"


def version_public(spec: ModelSpec) -> dict[str, Any]:
    return {
        "id": spec.version,
        "created_at": iso(CATALOG_DATE),
        "cog_version": COG_VERSION,
        "openapi_schema": {
            "components": {
                "schemas": {
                    "Input": spec.input_cls.model_json_schema(),
                    "Output": {"type": "array", "items": {"type": "string", "format": "uri"}},
                }
            }
        },
    }


def model_public(spec: ModelSpec) -> dict[str, Any]:
    return {
        "owner": spec.owner,
        "name": spec.name,
        "description": spec.description,
        "visibility": "public",
        "run_count": None,
        "pricing": spec.pricing.public(),
        "latest_version": version_public(spec),
    }


def named_model(owner: str, name: str) -> ModelSpec:
    spec = find_model(f"{owner}/{name}")
    if spec is None:
        raise HTTPException(404, f"Unknown model '{owner}/{name}': see GET /v1/models.")
    return spec


@router.get("")
def list_models(_: CurrentKey) -> dict[str, Any]:
    """Every model this farm serves."""
    return {"next": None, "previous": None, "results": [model_public(spec) for spec in MODELS.values()]}


@router.get("/{owner}/{name}")
def get_model(owner: str, name: str, _: CurrentKey) -> dict[str, Any]:
    """One model, with its latest version's input schema."""
    return model_public(named_model(owner, name))


@router.get("/{owner}/{name}/versions")
def list_versions(owner: str, name: str, _: CurrentKey) -> dict[str, Any]:
    """The model's versions (one per farm build)."""
    return {"next": None, "previous": None, "results": [version_public(named_model(owner, name))]}


@router.get("/{owner}/{name}/versions/{version_id}")
def get_version(owner: str, name: str, version_id: str, _: CurrentKey) -> dict[str, Any]:
    """One version, as ``replicate.run("owner/name:version")`` reads it."""
    spec = named_model(owner, name)
    if version_id != spec.version:
        raise HTTPException(404, f"Unknown version {version_id!r} of '{owner}/{name}'.")
    return version_public(spec)
