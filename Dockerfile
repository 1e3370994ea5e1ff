# gemini-proxy: a slim, non-root image. Config and keys are supplied at run time, never baked in:
#
#   docker build -t gemini-proxy .
#   docker run --rm -p 8080:8080 \
#     -v "$PWD/routing.toml:/config/routing.toml:ro" \
#     -e GEMINI_API_KEY -e GATEWAY_API_KEY \
#     gemini-proxy
#
# Validate a config with the image:  docker run --rm -v "$PWD/routing.toml:/config/routing.toml:ro" \
#   gemini-proxy check --config /config/routing.toml
# Try it without a key:  docker run --rm -p 8080:8080 gemini-proxy demo \
#   --config /etc/gemini-proxy/routing.example.toml --host 0.0.0.0 --port 8080

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gemini_proxy ./gemini_proxy
# A wheel install (not editable) into a prefix that the runtime stage copies whole.
RUN pip install --no-cache-dir --prefix=/install .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=build /install /usr/local
# The commented example config, for `check` and `demo`; the real one is mounted at /config.
COPY routing.toml /etc/gemini-proxy/routing.example.toml
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin proxy
USER 10001:10001
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=3s --start-period=5s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)"]
# exec form: gemini-proxy is PID 1 and gets SIGTERM directly (it drains in-flight requests).
ENTRYPOINT ["gemini-proxy"]
CMD ["serve", "--config", "/config/routing.toml", "--host", "0.0.0.0", "--port", "8080"]
