# One image for the gateway and the workers. Slim, non-root, with a healthcheck.
# Embedded: `xai-service serve`; distributed: set XAI_REDIS_URL and also run
# `xai-service worker` containers (see docker-compose.yml).
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY service ./service
RUN pip install --no-cache-dir --prefix=/install . \
 && pip install --no-cache-dir --prefix=/install --no-deps dice-ml==0.12

FROM python:3.11-slim
RUN useradd --create-home --uid 10001 xai
COPY --from=build /install /usr/local
WORKDIR /app
COPY --chown=xai:xai models ./models
# Receipts and the keys folder (a volume shared by gateway and workers takes this owner).
RUN install -d -o xai -g xai -m 0700 /app/var /app/var/keys
USER xai
ENV XAI_MODELS_DIR=/app/models \
    XAI_PORT=8000 \
    PYTHONUNBUFFERED=1
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/readyz').status == 200 else 1)"
# Without XAI_API_KEYS the service only binds to loopback; set keys to serve on 0.0.0.0.
CMD ["xai-service", "serve"]
