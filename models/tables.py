"""The farm's tables: API keys, predictions, the outbox that feeds the broker, input files, and webhook
events with their delivery attempts."""

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    case,
    func,
    literal_column,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column
from sqlalchemy.sql.elements import Grouping

from models.db import Base
from models.status import Status


class ApiKey(Base):
    """A caller's credential. Only the SHA-256 of the key is stored; the key is shown once."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    key_prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Standard Webhooks signing secret (``whsec_<base64>``), made on first request and then kept.
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    # After a rotation the old secret still signs (a second signature) until it expires.
    previous_webhook_secret: Mapped[str | None] = mapped_column(String(64))
    previous_webhook_secret_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # May manage keys and see every key's usage.
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    # Per-key limits; NULL takes the farm's default (FARM_RATE_LIMIT_PER_MINUTE, FARM_MAX_UNFINISHED_PER_KEY).
    rate_limit_per_minute: Mapped[int | None] = mapped_column(Integer)
    max_unfinished: Mapped[int | None] = mapped_column(Integer)
    # Creates are refused once this calendar month's charged price reaches it; NULL: no cap.
    monthly_spend_cap_usd: Mapped[float | None]


class Prediction(Base):
    """One job: its validated input, lifecycle state, fencing token, outputs and metrics.

    Only ``models.lifecycle`` writes ``status``.
    """

    __tablename__ = "predictions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str] = mapped_column(String(200))
    version: Mapped[str] = mapped_column(String(64))
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    seed: Mapped[int] = mapped_column(BigInteger)
    status: Mapped[Status] = mapped_column(String(16), default=Status.STARTING)

    # Fencing token: a claim increments it; every later write is guarded by it.
    attempt: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer)
    worker: Mapped[str | None] = mapped_column(String(200))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    cancel_requested_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Cancel-After: queued or running past this moment, the prediction is canceled.
    deadline: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # img2img: the init image, stored by the gateway (workers never fetch customer URLs).
    image_key: Mapped[str | None] = mapped_column(String(300))
    # Where and which events to deliver; the format is the front door's payload shape (native, fal, eachlabs).
    webhook: Mapped[str | None] = mapped_column(Text)
    webhook_events_filter: Mapped[list[str] | None] = mapped_column(JSONB)
    webhook_format: Mapped[str | None] = mapped_column(String(16))

    output_keys: Mapped[list[str] | None] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    logs: Mapped[str] = mapped_column(Text, default="", server_default="")
    progress_step: Mapped[int | None] = mapped_column(Integer)
    progress_total: Mapped[int | None] = mapped_column(Integer)
    has_nsfw_concepts: Mapped[list[bool] | None] = mapped_column(JSONB)

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    completed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    predict_time: Mapped[float | None]
    gpu_seconds: Mapped[float | None]
    gpu_class: Mapped[str | None] = mapped_column(String(100))
    # The worker's price of one GPU hour when it ran this; cost_usd = gpu_seconds × it / 3600.
    gpu_hourly_usd: Mapped[float | None]
    cost_usd: Mapped[float | None]
    price_usd: Mapped[float | None]

    __table_args__ = (
        # Listing is per key, newest first, with (created_at, id) as the cursor.
        Index("ix_predictions_key_created", "api_key_id", "created_at", "id"),
        Index(
            "ix_predictions_unfinished",
            "status",
            postgresql_where=text("status IN ('starting', 'processing')"),
        ),
        # Admission counts one key's unfinished predictions under the key's lock (api/admission.py): with this,
        # it reads that key's rows, not every unfinished row of the farm.
        Index("ix_predictions_key_status", "api_key_id", "status"),
        # /metrics reads only the predictions finished since its last scrape (models/farm_stats.py).
        Index("ix_predictions_completed", "completed_at"),
        # A queued prediction's standing reads its model's last runs and the workers busy with it now
        # (models/queue_eta.py) on every poll and create. These two hold just those rows, so the standing reads
        # a handful whatever the table's statistics say: with them stale (a farm's first minute, a burst, a
        # restore), the planner read every row of the model instead.
        Index(
            "ix_predictions_model_succeeded",
            "model",
            "completed_at",
            postgresql_where=text("status = 'succeeded'"),
        ),
        Index(
            "ix_predictions_model_processing",
            "model",
            "lease_expires_at",
            postgresql_where=text("status = 'processing'"),
        ),
    )


# A prediction's place in its model's queue: created_at while it waits (starting), NULL otherwise. Indexed as this
# very expression (written with the literal, so that Postgres matches queries to the index), which also gives
# the planner statistics of the queued rows alone: counting the jobs ahead of one reads only those
# (models/queue_eta.py), not every unfinished row.
QUEUED_AT = case((Prediction.status == literal_column(f"'{Status.STARTING.value}'"), Prediction.created_at))
# Grouping: CREATE INDEX wants an expression in parentheses, and SQLAlchemy writes a CASE bare.
Index("ix_predictions_queue_order", Prediction.model, Grouping(QUEUED_AT), Prediction.id)


class OutboxMessage(Base):
    """A task to publish to the broker, written in the same transaction as the row it concerns."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"))
    task_name: Mapped[str] = mapped_column(String(200))
    queue: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_outbox_unsent", "id", postgresql_where=text("sent_at IS NULL")),)


class File(Base):
    """A file in storage that a caller may use as an input: an upload (``POST /v1/files``) or the init
    image a prediction received as a data URI. Visible to its key only."""

    __tablename__ = "files"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    name: Mapped[str] = mapped_column(String(255))
    content_type: Mapped[str] = mapped_column(String(200))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    storage_key: Mapped[str] = mapped_column(String(500))
    # "metadata" is reserved on declarative classes; the column keeps the API's name.
    file_metadata: Mapped[dict[str, Any]] = mapped_column("metadata", JSONB, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (Index("ix_files_key_created", "api_key_id", "created_at"),)


class WebhookEvent(Base):
    """One event to deliver to a prediction's webhook, written in the transaction of the change that caused
    it. The id is the ``webhook-id`` header: the same on every attempt. The dispatcher renders the payload
    at send time (fresh output URLs) and keeps the retry schedule here, not in the broker."""

    __tablename__ = "webhook_events"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"))
    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"))
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(Text)
    format: Mapped[str] = mapped_column(String(16))
    # Terminal events (from the transition to succeeded/failed/canceled) are retried for days; others once.
    terminal: Mapped[bool] = mapped_column(Boolean)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    state: Mapped[str] = mapped_column(String(16), server_default="pending")
    # Due time while pending; while an attempt is in flight, the end of the sender's lease on it.
    next_attempt_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), server_default=func.now())
    # Position in the retry schedule (a redelivery starts it again); attempts are counted in webhook_attempts.
    schedule_step: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    __table_args__ = (
        Index("ix_webhook_events_due", "next_attempt_at", postgresql_where=text("state = 'pending'")),
        Index("ix_webhook_events_prediction", "prediction_id", "created_at"),
    )


class WebhookAttempt(Base):
    """One try at delivering an event: when, what the receiver answered, how long it took, what went wrong."""

    __tablename__ = "webhook_attempts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("webhook_events.id"), index=True)
    # Indexed: /metrics counts only the attempts made since its last scrape.
    attempted_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    status_code: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float]
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str | None] = mapped_column(Text)
    response_excerpt: Mapped[str | None] = mapped_column(Text)


class DisabledWebhookUrl(Base):
    """A receiver URL that answered 410 Gone: nothing more is sent there for this key."""

    __tablename__ = "disabled_webhook_urls"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    url: Mapped[str] = mapped_column(Text, primary_key=True)
    disabled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdempotencyKey(Base):
    """A create made with ``Idempotency-Key``: a retry with the same key and body gets the same prediction.
    Scoped per API key; kept at least FARM_IDEMPOTENCY_HOURS."""

    __tablename__ = "idempotency_keys"

    api_key_id: Mapped[int] = mapped_column(ForeignKey("api_keys.id"), primary_key=True)
    key: Mapped[str] = mapped_column(String(255), primary_key=True)
    # SHA-256 of the request (route and body): the same key with another body is refused.
    request_hash: Mapped[str] = mapped_column(String(64))
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now(), index=True)


class FarmSecret(Base):
    """A secret the farm makes for itself on first use and every process then shares (e.g. the key that signs
    local-storage output URLs), so no operator has to configure or distribute it."""

    __tablename__ = "farm_secrets"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
