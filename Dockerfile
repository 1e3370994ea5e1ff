# gemini-proxy: a slim, non-root image. Config and keys are supplied at run time, never baked in.
# tests/test_image.py assembles this image's files from the COPY lines below and runs each
# `docker run` command of this header on them (no Docker engine needed), so keep them exact:
#
#   docker build -t gemini-proxy .
#   docker run --rm -p 8080:8080 -v "$PWD/routing.toml:/config/routing.toml:ro" -v "$PWD/schemas:/config/schemas:ro" -e GEMINI_API_KEY gemini-proxy
#
# Validate a config with the image (no keys needed for that):
#   docker run --rm -v "$PWD/routing.toml:/config/routing.toml:ro" -v "$PWD/schemas:/config/schemas:ro" gemini-proxy check --no-secrets
# The bundled example:
#   docker run --rm gemini-proxy check --no-secrets --config /etc/gemini-proxy/routing.example.toml
# Try it without a key (the built-in simulated Gemini):
#   docker run --rm -p 8080:8080 gemini-proxy demo --host 0.0.0.0 --port 8080

# python:3.11-slim (CPython 3.11.15 on Debian trixie, published 2026-08-05), pinned by the digest of
# its multi-platform index; the linux/amd64 image inside it is
# sha256:78b39ef14d8e2b4d71f8dc304f1328c37df95fe0ef99477c2ae6bd3d03784553. Source: Docker's
# docker-library/repo-info, repos/python/remote/3.11-slim.md. To move to a newer build:
# `docker buildx imagetools inspect python:3.11-slim` and replace both digests below.
FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff AS build
WORKDIR /src
# Dependencies first, each pinned and hash-checked (`make lock` regenerates the file); this layer
# is rebuilt only when the lock changes. The lock includes the [otel] extra: the image sends
# traces when given an OTLP endpoint (-e OTEL_EXPORTER_OTLP_ENDPOINT=http://collector:4318).
COPY requirements.lock ./
RUN pip install --no-cache-dir --require-hashes --prefix=/install -r requirements.lock
# The package itself (with its bundled example config and schemas, package data), built by the
# base image's own setuptools; --no-deps: every dependency came from the lock above.
COPY pyproject.toml README.md ./
COPY gemini_proxy ./gemini_proxy
RUN pip install --no-cache-dir --no-deps --no-build-isolation --prefix=/install .

FROM python:3.11-slim@sha256:90744cff8f32887f075c47d747a173ff333e9e98801667af93c357fa9f5e28ff
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# The commented example config and the schema it names (schema_file is relative to the config's
# folder), for `check`, `demo` and as a template; the real config is mounted at /config.
COPY routing.toml /etc/gemini-proxy/routing.example.toml
COPY schemas /etc/gemini-proxy/schemas
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin proxy \
    && install -d -o 10001 -g 10001 /var/lib/gemini-proxy/batch
# /var/lib/gemini-proxy/batch: the Batch API's files and job records ([batch] dir), writable by the
# container's user; mount a volume there (docker-compose.yml) so batches outlive the container.
# `check` and `demo` without --config read ./routing.toml: the mounted one, else the example
# bundled in the package.
WORKDIR /config
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# exec form: gemini-proxy is PID 1 and gets SIGTERM directly (it drains in-flight requests).
ENTRYPOINT ["gemini-proxy"]
CMD ["serve", "--config", "/config/routing.toml", "--host", "0.0.0.0", "--port", "8080"]
