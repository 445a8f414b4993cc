# The gateway image: the project installed from pyproject.toml, run as a non-root user.
# docker-compose.yml runs it next to Redis; any number of replicas may share that Redis.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --create-home --home-dir /home/gateway gateway

WORKDIR /app

# Dependencies and code change at different rates, but pip needs the packages to install the
# project, so both are copied before the install.
COPY pyproject.toml README.md ./
COPY gateway/ gateway/
COPY adapters/ adapters/
RUN pip install . && rm -rf build *.egg-info

# The shipped policy and organizations; docker-compose.yml mounts the operator's own over it.
COPY --chown=gateway:gateway config/ config/

ENV GATEWAY_HOST=0.0.0.0 \
    GATEWAY_PORT=8080 \
    GATEWAY_CONFIG_DIR=/app/config \
    GATEWAY_STATE_DIR=/home/gateway/state

USER gateway

EXPOSE 8080

HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8080/readyz', timeout=3)"]

# One process. For one per core, set GATEWAY_WORKERS=N (or run `serve --workers N`): gunicorn
# keeps N processes on port 8080, and `docker stop`'s SIGTERM stops them all gracefully (allow
# 35 s: `docker stop -t 35`, or compose's `stop_grace_period: 35s`).
CMD ["python", "-m", "gateway", "serve"]
