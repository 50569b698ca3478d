# syntax=docker/dockerfile:1
# sdm-router gateway image.
#   CPU (default):  docker build -t sdm-router:cpu .
#   CUDA:           docker build --build-arg VARIANT=cuda -t sdm-router:cuda .
# Both variants install from the hashed locks in requirements/ with scripts/install (as `make run`
# does). The CUDA variant takes PyPI's CUDA torch build and faiss-gpu-cu12 (requirements/cuda.txt);
# both ship the CUDA runtime as pip packages, so the base stays python:slim and the host only needs
# the NVIDIA driver and the NVIDIA Container Toolkit. vLLM runs in its own containers.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VARIANT=cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
WORKDIR /src
# The same install script and hashed locks as `make run` (scripts/install): the lock first, in
# its own layer with the model packages, so code changes do not reinstall torch. The CPU lock
# pins torch's CPU build (2.13.0+cpu), which lives on PyTorch's CPU index; the CUDA lock takes
# PyPI's CUDA build and faiss-gpu-cu12.
COPY pyproject.toml README.md ./
COPY requirements ./requirements
COPY scripts/install ./scripts/install
RUN case "$VARIANT" in \
      cpu)  export PIP_EXTRA_INDEX_URL="https://download.pytorch.org/whl/cpu"; use=run ;; \
      cuda) use=cuda ;; \
      *)    echo "VARIANT must be cpu or cuda, got '$VARIANT'" >&2; exit 1 ;; \
    esac \
 && scripts/install "$use" /opt/venv/bin/python --only-deps \
 && echo "$use" > /tmp/lock-use
COPY sdm_router ./sdm_router
RUN scripts/install "$(cat /tmp/lock-use)" /opt/venv/bin/python --only-project \
 && sdm-router --help > /dev/null

FROM ${PYTHON_IMAGE} AS runtime
ARG VARIANT=cpu
LABEL org.opencontainers.image.title="sdm-router" \
      org.opencontainers.image.description="Uncertainty-aware OpenAI-compatible LLM routing gateway" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.sdm-router.variant="${VARIANT}"
RUN useradd --system --uid 10001 --gid 0 --create-home --home-dir /home/app app
COPY --from=build /opt/venv /opt/venv
COPY sdm_router/configs /app/configs
COPY deploy/docker-entrypoint.sh /usr/local/bin/sdm-router-entrypoint
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HF_HOME=/home/app/.cache/huggingface \
    HF_HUB_OFFLINE=1 \
    SDM_ROUTER_SERVER__HOST=0.0.0.0 \
    SDM_ROUTER_SERVER__PORT=8000 \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
WORKDIR /app
USER 10001
EXPOSE 8000
STOPSIGNAL SIGTERM
# Liveness only: a draining instance (readiness 503) is not unhealthy.
HEALTHCHECK --interval=15s --timeout=3s --start-period=180s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
ENTRYPOINT ["sdm-router-entrypoint"]
CMD ["sdm-router", "serve"]
