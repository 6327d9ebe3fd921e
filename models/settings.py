"""One settings object for every process, read from the environment (prefix ``FARM_``)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.net_guard import parse_networks

ModelPreset = Literal["sd3.5-medium", "tiny"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/farm",
        description="SQLAlchemy URL of the Postgres database that records every prediction.",
    )
    broker_url: str = Field(
        default="redis://127.0.0.1:6379/0", description="Celery broker (Redis) that carries ready jobs."
    )
    storage_url: str = Field(
        default="var/outputs",
        description="Where images go: a local directory (served by the gateway) or "
        "s3://bucket?endpoint_url=…&region=… for any S3-compatible store.",
    )
    public_url: str = Field(
        default="http://127.0.0.1:8000",
        description="Base URL clients use to reach the gateway; prediction and file URLs start with it.",
    )
    host: str = Field(default="127.0.0.1", description="Address the gateway binds.")
    port: int = Field(default=8000, description="Port the gateway binds.")

    model_preset: ModelPreset = Field(
        default="tiny",
        description="Pipeline the worker loads: sd3.5-medium (real weights) or tiny (random weights, tests).",
    )
    model_path: str = Field(
        default="stabilityai/stable-diffusion-3.5-medium",
        description="Local directory, or Hugging Face repo id in the local cache, of the SD3.5 weights.",
    )
    safety_checker_path: str = Field(
        default="",
        description="Local directory of a diffusers StableDiffusionSafetyChecker plus its CLIP image processor "
        "(preprocessor_config.json), e.g. CompVis/stable-diffusion-safety-checker downloaded beforehand; the "
        "worker checks outputs with it when the input asks. Empty: no checker (has_nsfw_concepts is null).",
    )
    worker_name: str = Field(default="", description="Name recorded on claimed predictions (default: host:pid).")
    gpu_class: str = Field(default="", description="GPU model recorded per prediction (default: detected).")
    gpu_hourly_usd: float = Field(
        default=2.0, ge=0, description="What one hour of this worker's GPU costs; cost_usd derives from it."
    )

    lease_seconds: float = Field(default=90.0, gt=0, description="How long a claim lives without renewal.")
    max_attempts: int = Field(default=3, ge=1, description="Claims allowed per prediction before it fails.")
    heartbeat_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Worker: how often a running job renews its lease, records progress, checks cancel.",
    )
    relay_poll_seconds: float = Field(
        default=1.0, gt=0, description="Outbox relay: longest wait between sweeps when no notification comes."
    )
    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs the farm may fetch images from (and post webhooks to) although they "
        "are private, loopback or link-local, e.g. 10.20.0.0/16 for an on-prem image store. Empty: public only.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start-up, not at the first fetch
        return value


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
