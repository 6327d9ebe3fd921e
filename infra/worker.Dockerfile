# syntax=docker/dockerfile:1
#
# The GPU worker image: Celery worker with the warm SD3.5 Medium pipeline (docker-compose.yml: worker).
# It holds models/ and worker/ only: the worker never imports api/.
#
# torch comes first, as the CUDA build from the PyTorch CUDA index, pinned to the version in
# pyproject.toml (torch==2.13.0); `pip install .[worker]` then finds it already satisfied
# (2.13.0+cu130 matches ==2.13.0) and only adds diffusers/transformers/accelerate/safetensors.
# The torch wheel ships its own CUDA user-space libraries (cuBLAS, cuDNN, NCCL ...); the host needs
# only the NVIDIA driver (>= 580 for CUDA 13.0) and the NVIDIA Container Toolkit. For an older
# driver, build with e.g. --build-arg TORCH_INDEX_URL=https://download.pytorch.org/whl/cu128 and
# --build-arg CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu24.04.
#
# The weights are NOT in the image: they live in the hf-cache volume at HF_HOME and are never
# downloaded at request time (HF_HUB_OFFLINE=1). Fill the volume once, see docker-compose.yml.
#
# Build from the repository root:  docker build -f infra/worker.Dockerfile -t sd35-farm-worker .
ARG CUDA_IMAGE=nvidia/cuda:13.0.0-base-ubuntu24.04
FROM ${CUDA_IMAGE}

ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cu130
ARG TORCH_VERSION=2.13.0

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    HF_HOME=/root/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility

# Ubuntu 24.04's Python 3.12 in a virtualenv (PEP 668 forbids pip into the system interpreter).
# Ubuntu ships 3.12.3 with security backports; the SSRF guard must not rely on ipaddress.is_global
# alone anyway (reliability.md §4.5): it must keep its own block list on every interpreter.
# gcc and the Python headers: with FARM_COMPILE_TRANSFORMER=true, Triton compiles its kernel launchers at
# worker start, and without a C compiler the warm-up (and so the worker) fails.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.12 python3.12-venv python3.12-dev gcc libc6-dev \
       ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && python3.12 -m venv "$VIRTUAL_ENV"

# 1. The CUDA build of torch, alone in its own layer (the largest and least often changed).
RUN pip install "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}"

WORKDIR /app

# 2. The project with the worker extra; README* is optional (matches nothing when absent).
COPY pyproject.toml README* ./
COPY models/ models/
COPY worker/ worker/
# Versions are pinned in pyproject.toml.
# hadolint ignore=DL3013
RUN pip install ".[worker]" \
    && rm -rf build ./*.egg-info \
    && python -c "import torch, sys; \
sys.exit(0 if torch.__version__.split('+')[0] == '${TORCH_VERSION}' and torch.version.cuda \
else f'expected the CUDA build of torch ${TORCH_VERSION}, got {torch.__version__}')"

# Runs as root: the hf-cache volume is mounted at /root/.cache/huggingface (HF_HOME). Celery only
# warns about root because pickle is not accepted (accept_content=["json"]).
CMD ["celery", "-A", "worker.app", "worker", "--pool", "prefork", "--concurrency", "1", \
     "--queues", "sd35-medium", "--hostname", "gpu@%h", "--loglevel", "INFO"]
