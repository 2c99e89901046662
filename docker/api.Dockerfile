# The synthaudit API (and the one-shot `migrate` service). CPU-only torch: in the distributed
# deployment the API never runs a stage; it still imports the engine to validate configs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SYNTHAUDIT_HOME=/data SYNTHAUDIT_ALEMBIC_DIR=/app/alembic
WORKDIR /app

RUN pip install "torch==2.14.1" "torchvision==0.29.1" --index-url https://download.pytorch.org/whl/cpu
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY models ./models
COPY synthaudit ./synthaudit
COPY alembic ./alembic
COPY docker/entrypoint.sh /usr/local/bin/synthaudit-entrypoint
RUN pip install -e . "torch==2.14.1" && chmod +x /usr/local/bin/synthaudit-entrypoint \
    && useradd --create-home --uid 10001 synthaudit && mkdir -p /data/storage && chown -R synthaudit /data
USER synthaudit
# Large multipart uploads spool to disk: keep that on the storage volume (the entrypoint creates it).
ENV TMPDIR=/data/storage/tmp

EXPOSE 8000
ENTRYPOINT ["synthaudit-entrypoint"]
CMD ["synthaudit", "serve", "--host", "0.0.0.0", "--port", "8000"]
