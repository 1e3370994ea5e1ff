# gemini-proxy: one process per container; run several behind a load balancer (see deploy/).
# Config and keys are NOT baked in: routing.toml and the key files are mounted at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY pyproject.toml README.md ./
COPY proxy ./proxy
COPY adapters ./adapters
RUN pip install . && useradd --system --uid 10001 proxy

USER proxy
EXPOSE 8080
# Liveness without curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"
ENTRYPOINT ["gemini-proxy"]
CMD ["serve", "--config", "/etc/gemini-proxy/routing.toml", "--host", "0.0.0.0", "--port", "8080"]
