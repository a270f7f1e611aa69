# cascade-gateway container image.
#
#   docker build -t cascade-gateway:0.1.0 .
#   docker run --rm -p 8000:8000 -e OPENAI_API_KEY -e ANTHROPIC_API_KEY \
#     -v "$PWD/my-config.yaml:/etc/cascade-gateway/config.yaml:ro" cascade-gateway:0.1.0
#
# The builder installs the project (the same package README.md installs, without the dev extra)
# into a virtualenv; the final image gets only that virtualenv: no compilers, no pip cache, no
# sources. Nothing is downloaded at start-up: litellm's price map and tiktoken's encoding are
# read from the installed wheels.

FROM python:3.11-slim AS builder

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the long description, so the build needs it.
COPY pyproject.toml README.md ./
COPY cascade_gateway ./cascade_gateway
RUN python -m venv /opt/venv \
    && /opt/venv/bin/pip wheel --no-deps --wheel-dir /dist . \
    && /opt/venv/bin/pip install /dist/cascade_gateway-*.whl


FROM python:3.11-slim

ENV PATH=/opt/venv/bin:$PATH \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/prometheus

# Writable by the app: /tmp (in Kubernetes, emptyDirs mounted there) and the working directory,
# where the default storage (sqlite:///cascade-gateway.db) lands when no DATABASE_URL is set;
# mount a volume there to keep it. Kubernetes' read-only root needs a DATABASE_URL instead.
RUN groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp app \
    && install -d -o 10001 -g 10001 /tmp/prometheus /var/lib/cascade-gateway

COPY --from=builder /opt/venv /opt/venv
# A default config (it expects an upstream on 127.0.0.1:9100); mount your own over it.
COPY config/example.yaml /etc/cascade-gateway/config.yaml

WORKDIR /var/lib/cascade-gateway
USER 10001:10001
EXPOSE 8000

HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/liveness', timeout=4)"]

ENTRYPOINT ["cascade-gateway"]
CMD ["serve", "--config", "/etc/cascade-gateway/config.yaml", "--host", "0.0.0.0", "--port", "8000", "--workers", "2"]
