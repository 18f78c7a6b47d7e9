# syntax=docker/dockerfile:1.7
# gonogo: a small non-root image. Build: docker build -t gonogo .
# Run:   docker run -p 8080:8080 -e GONOGO_TOKENS=... -e GONOGO_DATABASE_URL=... \
#          -v ./gates:/etc/gonogo/gates:ro gonogo

FROM python:3.11-slim AS build
COPY --from=ghcr.io/astral-sh/uv:0.13 /uv /bin/uv
ENV UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy \
    UV_PYTHON_DOWNLOADS=never \
    UV_PROJECT_ENVIRONMENT=/opt/gonogo
WORKDIR /src
# Dependencies first, in their own layer, so a code change does not reinstall them.
# The dev group's path dependency is part of the lock, so its metadata is copied too.
COPY pyproject.toml uv.lock README.md ./
COPY tests/plugin_package/pyproject.toml tests/plugin_package/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-install-project
COPY app app
COPY gates gates
COPY probes probes
COPY migrations migrations
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --locked --no-dev --no-editable

FROM python:3.11-slim
RUN groupadd --system --gid 10001 gonogo \
 && useradd --system --uid 10001 --gid gonogo --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin gonogo \
 && mkdir -p /etc/gonogo/gates
COPY --from=build /opt/gonogo /opt/gonogo
ENV PATH=/opt/gonogo/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GONOGO_GATES_DIR=/etc/gonogo/gates \
    GONOGO_PORT=8080 \
    GONOGO_LOG_FORMAT=json
WORKDIR /tmp
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["gonogo", "serve", "--host", "0.0.0.0"]
