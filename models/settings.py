"""One settings object for every process, read from the environment (prefix ``FARM_``)."""

from functools import lru_cache
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.failpoints import parse_failpoints
from models.net_guard import parse_networks
from models.webhooks import parse_schedule

# simulated: a benchmark stand-in that sleeps per image (worker/pipelines/simulated.py), never a model.
ModelPreset = Literal["sd3.5-medium", "tiny", "simulated"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="FARM_", env_file=".env", extra="ignore")

    database_url: str = Field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/farm",
        description="SQLAlchemy URL of the Postgres database that records every prediction.",
    )
    database_prepared_statements: bool = Field(
        default=True,
        description="Polls and key lookups run as server-side prepared statements, planned once per connection. "
        "Behind PgBouncer in transaction mode this needs PgBouncer 1.21+ with max_prepared_statements > 0; "
        "set false for an older one.",
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
        description="Pipeline the worker loads: sd3.5-medium (real weights), tiny (random weights, tests) or "
        "simulated (no model: sleeps FARM_SIMULATED_SECONDS per image and returns a labelled placeholder; benchmarks).",
    )
    simulated_seconds: float = Field(
        default=1.0,
        ge=0,
        description="The simulated preset's time per image, in seconds (slept, spread over the steps).",
    )
    simulated_crash_marker: str = Field(
        default="",
        description="Test only (fault suite): a simulated job whose prompt contains this text SIGKILLs its own "
        "worker process at its first step, every attempt (a poison job). Empty: off.",
    )
    simulated_ignore_soft_limit_marker: str = Field(
        default="",
        description="Test only (fault suite): a simulated job whose prompt contains this text blocks the soft time "
        "limit's signal, as code stuck outside Python would, so only the hard time limit stops it. Empty: off.",
    )
    model_path: str = Field(
        default="stabilityai/stable-diffusion-3.5-medium",
        description="Local directory, or Hugging Face repo id in the local cache, of the SD3.5 weights.",
    )
    # Speed levers of the sd3.5-medium preset on CUDA (worker/pipelines/fast_path.py; `make bench-gpu` measures
    # each). All off: none has been measured on a GPU yet; each is turned on once measured to pay, and those
    # that change pixels only with their measured pixel difference recorded in docs/benchmarks.md.
    fuse_qkv: bool = Field(
        default=False,
        description="Fuse each attention's Q, K and V projections into one matmul (SD3.5's qk-norm kept). "
        "Changes pixels by float rounding only.",
    )
    attention_kernel: Literal["sdpa", "cudnn"] = Field(
        default="sdpa",
        description="Attention kernel: sdpa (PyTorch's choice, flash on H100) or cudnn (cuDNN attention first, "
        "falling back to flash, efficient, math).",
    )
    vae_channels_last: bool = Field(default=False, description="Run the VAE in channels-last memory format.")
    compile_transformer: bool = Field(
        default=False,
        description="torch.compile the transformer's blocks (regional, fullgraph) at worker start, with warm-up "
        "renders that leave every size, image count and CFG setting compiled. 1.58x faster on an H100; pixels "
        "change at bf16 rounding level.",
    )
    compile_mode: Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"] = Field(
        default="default",
        description="torch.compile mode with FARM_COMPILE_TRANSFORMER; reduce-overhead and max-autotune add CUDA "
        "graphs.",
    )
    compile_cache_dir: str = Field(
        default="var/compile-cache",
        description="Inductor's cache (TORCHINDUCTOR_CACHE_DIR): on a persistent volume, a restarted worker reuses "
        "the compiled kernels. Empty: torch's default under /tmp.",
    )
    fp8: bool = Field(
        default=False,
        description="FP8 (torchao, dynamic per-row) for the transformer blocks' linear layers; needs torchao and a "
        "GPU of compute capability 8.9+. Changes pixels.",
    )
    low_memory: bool = Field(
        default=False,
        description="Keep each model on the GPU only while it runs (enable_model_cpu_offload), for ~12 GB cards. "
        "Slower.",
    )
    drop_t5: bool = Field(
        default=False,
        description="Do not load the T5-XXL text encoder (9.5 GB in bf16): its embeddings become zeros. Changes "
        "pixels (mostly text rendering and long prompts).",
    )
    batch_max_images: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Worker: the most images one pipeline call renders. Above 1, a worker that claims a "
        "text-to-image job also claims queued ones of the same size, steps, guidance and image count (oldest "
        "first) and denoises them together. 1 (the default): each job runs alone. Batched kernels can change "
        "pixels at float-rounding level, and batching pays at small sizes: measure with `make bench-gpu` first.",
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
    metrics_token: str = Field(
        default="",
        description="Bearer token GET /metrics requires (Prometheus: authorization.credentials_file). "
        "Empty: /metrics is open, for a gateway that only a private network reaches.",
    )

    lease_seconds: float = Field(default=90.0, gt=0, description="How long a claim lives without renewal.")
    max_attempts: int = Field(default=3, ge=1, description="Claims allowed per prediction before it fails.")
    heartbeat_seconds: float = Field(
        default=0.5,
        ge=0,
        description="Worker: how often a running job renews its lease, records progress, checks cancel.",
    )
    task_soft_time_limit_seconds: float = Field(
        default=600.0,
        gt=0,
        description="Worker: a job running this long is stopped and ends failed with a readable error.",
    )
    task_time_limit_seconds: float = Field(
        default=660.0,
        gt=0,
        description="Worker: a job that ignored the soft limit has its process killed at this age and ends failed.",
    )
    visibility_timeout_seconds: float = Field(
        default=3600.0,
        gt=0,
        description="Redis redelivers a job unacknowledged this long; above the hard limit, so a running job is "
        "never delivered twice. Every process on the broker must use the same value (Redis takes the shortest).",
    )
    relay_poll_seconds: float = Field(
        default=1.0,
        gt=0,
        description="Outbox relay and webhook dispatcher: longest wait between sweeps when no notification comes.",
    )
    reconcile_seconds: float = Field(
        default=30.0,
        gt=0,
        description="Relay: how often it looks for queued predictions whose message Redis lost, and how long "
        "after publishing a message may be missing before the prediction is published again.",
    )
    allowed_networks: str = Field(
        default="",
        description="Comma-separated CIDRs the farm may fetch images from (and post webhooks to) although they "
        "are private, loopback or link-local, e.g. 10.20.0.0/16 for an on-prem image store. Empty: public only.",
    )

    webhook_retry_schedule: str = Field(
        default="0,5,300,1800,7200,18000,36000,36000",
        description="Webhook dispatcher: seconds before each attempt at a terminal event, counted from the "
        "previous attempt (the first from the event). Default: immediately, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.",
    )
    webhook_timeout_seconds: float = Field(
        default=15.0, gt=0, description="Webhook dispatcher: longest wait for a receiver's answer, per attempt."
    )
    webhook_concurrency: int = Field(
        default=16, ge=1, description="Webhook dispatcher: deliveries in flight at once per dispatcher process."
    )
    webhook_secret_overlap_seconds: float = Field(
        default=86400.0,
        ge=0,
        description="After a webhook secret rotation, how long the old secret still signs (a second signature).",
    )

    create_rate_limit_per_minute: int = Field(
        default=60,
        ge=1,
        description="Gateway: requests that create or change something (POST, PUT, DELETE) per minute per key, "
        "counted in Redis across gateway processes; a key's own limit overrides it.",
    )
    read_rate_limit_per_minute: int = Field(
        default=3000,
        ge=1,
        description="Gateway: reads (GET) per minute per key. Higher than creates: the peers' clients poll "
        "every 0.1-0.5 s.",
    )
    max_unfinished_per_key: int = Field(
        default=10, ge=1, description="Gateway: unfinished predictions a key may have; a key's own cap overrides it."
    )
    idempotency_hours: float = Field(
        default=24.0, gt=0, description="How long an Idempotency-Key keeps answering with its first prediction."
    )
    max_request_bytes: int = Field(
        default=72 * 1024 * 1024,
        ge=1024,
        description="Gateway: the largest request body, refused with 413 before it is read (room for a 50 MB "
        "image as a base64 data URI).",
    )
    output_url_seconds: int = Field(
        default=3600,
        ge=60,
        le=604800,  # the longest an S3 (SigV4) presigned URL may live
        description="How long the output URLs in a prediction stay valid: S3 presigned URLs, or the farm's signed "
        "/files/… URLs with local storage (rounded up to the minute). Fetch the prediction again for fresh ones.",
    )
    output_url_secret: str = Field(
        default="",
        description="Key that signs local-storage output URLs; the same in every gateway and webhook dispatcher. "
        "Empty (the default): the farm makes a random one on first use and keeps it in Postgres (farm_secrets).",
    )

    failpoints: str = Field(
        default="",
        description="Test only (fault suite): comma-separated point=action pairs that make a process fail at a named "
        "point, e.g. relay.after_publish=exit (models/failpoints.py lists them). Empty: off.",
    )

    @field_validator("allowed_networks")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        parse_networks(value)  # a typo fails at start-up, not at the first fetch
        return value

    @field_validator("webhook_retry_schedule")
    @classmethod
    def _schedule_parses(cls, value: str) -> str:
        parse_schedule(value)
        return value

    @field_validator("failpoints")
    @classmethod
    def _failpoints_parse(cls, value: str) -> str:
        parse_failpoints(value)
        return value

    @model_validator(mode="after")
    def _time_limits_nest(self) -> "Settings":
        # Soft before hard, so the soft handler can record the failure; hard before redelivery, so a running
        # job is never delivered to a second worker (reliability.md §1).
        if not self.task_soft_time_limit_seconds < self.task_time_limit_seconds < self.visibility_timeout_seconds:
            raise ValueError(
                "need FARM_TASK_SOFT_TIME_LIMIT_SECONDS < FARM_TASK_TIME_LIMIT_SECONDS < "
                f"FARM_VISIBILITY_TIMEOUT_SECONDS, got {self.task_soft_time_limit_seconds:g}, "
                f"{self.task_time_limit_seconds:g}, {self.visibility_timeout_seconds:g}"
            )
        return self

    @property
    def retry_schedule(self) -> tuple[float, ...]:
        return parse_schedule(self.webhook_retry_schedule)


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
