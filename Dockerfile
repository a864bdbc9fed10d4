# Two images from one file:
#   docker build --target api -t distillery-api .
#   docker build --target worker -t distillery-worker .   (CUDA PyTorch base for GPU workers)
FROM python:3.11-slim AS api
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*
COPY requirements/ requirements/
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.14.1 torchvision==0.29.1 \
 && pip install -r requirements/base.txt
COPY pyproject.toml README.md alembic.ini ./
COPY api/ api/
COPY worker/ worker/
COPY kdcore/ kdcore/
COPY migrations/ migrations/
RUN pip install --no-deps -e . && useradd --create-home --uid 10001 distillery && mkdir -p /data && chown distillery /data
USER distillery
ENV DISTILLERY_DATA_DIR=/data DISTILLERY_HOST=0.0.0.0 DISTILLERY_PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --retries=5 CMD curl -fsS http://127.0.0.1:8000/healthz || exit 1
CMD ["sh", "-c", "distillery migrate && distillery api"]

FROM pytorch/pytorch:2.9.1-cuda12.8-cudnn9-runtime AS worker
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app
COPY requirements/ requirements/
RUN pip install -r requirements/base.txt
COPY pyproject.toml README.md alembic.ini ./
COPY api/ api/
COPY worker/ worker/
COPY kdcore/ kdcore/
COPY migrations/ migrations/
RUN pip install --no-deps -e . && useradd --create-home --uid 10001 distillery && mkdir -p /data && chown distillery /data
USER distillery
ENV DISTILLERY_DATA_DIR=/data
HEALTHCHECK --interval=30s --timeout=10s --retries=3 CMD celery -A worker.tasks inspect ping -d celery@$HOSTNAME || exit 1
CMD ["distillery", "worker"]
