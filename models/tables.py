"""The farm's tables: API keys, predictions, the outbox that feeds the broker, and input files."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, DateTime, ForeignKey, Index, Integer, String, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

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


class Prediction(Base):
    """One job: its validated input, lifecycle state, fencing token, outputs and metrics.

    Only ``models.lifecycle`` writes ``status``.
    """

    __tablename__ = "predictions"
    # INSERT … RETURNING the server defaults (created_at), so a new row needs no second read.
    __mapper_args__ = {"eager_defaults": True}

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
    )


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
