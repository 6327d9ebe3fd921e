# syntax=docker/dockerfile:1
#
# The gateway image: FastAPI gateway, outbox relay, Alembic migrations and Flower all run from it
# (docker-compose.yml: api, relay, migrate, flower). It holds api/, models/ and migrations/ only.
#
# NEVER install torch (or diffusers/transformers) here: the base install of pyproject.toml has no
# torch, and `pip install .[worker]` belongs to infra/worker.Dockerfile alone. The build fails if
# torch ends up in this image anyway.
#
# Build from the repository root:  docker build -f infra/api.Dockerfile -t sd35-farm-api .
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app

# pyproject.toml also carries the Alembic configuration ([tool.alembic]), so `alembic upgrade head`
# works from /app. README* is optional (matches nothing when the file is absent).
COPY pyproject.toml README* ./
COPY models/ models/
COPY api/ api/
COPY migrations/ migrations/

RUN pip install . \
    && rm -rf build ./*.egg-info \
    && python -c "import importlib.util as u, sys; \
bad = [m for m in ('torch', 'diffusers', 'transformers') if u.find_spec(m)]; \
sys.exit(f'the gateway image must not contain {bad}' if bad else 0)"

# Run as an unprivileged user; /app stays owned by root (read-only for the service).
RUN groupadd --system --gid 10001 farm \
    && useradd --system --uid 10001 --gid farm --no-create-home --home-dir /app farm
USER 10001:10001

EXPOSE 8000

CMD ["uvicorn", "api.main:app", "--host", "0.0.0.0", "--port", "8000"]
