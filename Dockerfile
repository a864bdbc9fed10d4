# Three images from one file, each an extra of the same package:
#   docker build --target client -t distillery-client .   (httpx + rich: the `distillery` user commands)
#   docker build --target api    -t distillery-api .
#   docker build --target worker -t distillery-worker .   (CUDA PyTorch base for GPU workers)
FROM python:3.11-slim AS source
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY requirements/ requirements/
COPY api/ api/
COPY worker/ worker/
COPY kdcore/ kdcore/
COPY core/ core/
COPY client/ client/
COPY migrations/ migrations/

FROM python:3.11-slim AS client
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=source /app /src
RUN pip install /src && rm -rf /src
ENTRYPOINT ["distillery"]

FROM python:3.11-slim AS api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY --from=source /app /src
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -c /src/requirements/constraints.txt '/src[service]' && rm -rf /src \
 && useradd --create-home --uid 10001 distillery && mkdir -p /data && chown distillery /data
USER distillery
WORKDIR /home/distillery
ENV DISTILLERY_DATA_DIR=/data DISTILLERY_HOST=0.0.0.0 DISTILLERY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["sh", "-c", "distillery migrate && distillery api"]

FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
COPY --from=source /app /src
RUN pip install '/src[worker]' && rm -rf /src \
 && useradd --create-home --uid 10001 distillery && mkdir -p /data && chown distillery /data
USER distillery
WORKDIR /home/distillery
ENV DISTILLERY_DATA_DIR=/data
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD celery -A worker.tasks inspect ping -d celery@$HOSTNAME || exit 1
CMD ["distillery", "worker"]
