# The synthaudit GPU worker: CUDA runtime, CUDA torch, FAISS with GPU support.
# One worker process runs one audit at a time (`--concurrency 1`); run one container per GPU.
FROM nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SYNTHAUDIT_HOME=/data SYNTHAUDIT_ALEMBIC_DIR=/app/alembic \
    VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip \
    && rm -rf /var/lib/apt/lists/* && python3 -m venv /opt/venv
WORKDIR /app

# The PyPI torch wheels for Linux bundle CUDA 12 libraries.
RUN pip install "torch==2.14.1" "torchvision==0.29.1"
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY worker ./worker
COPY models ./models
COPY synthaudit ./synthaudit
COPY alembic ./alembic
COPY docker/entrypoint.sh /usr/local/bin/synthaudit-entrypoint
# FAISS GPU build: faiss-cpu (the default dependency) and the GPU wheel both provide the `faiss`
# module, so swap them. models/index.py uses the GPU when faiss.get_num_gpus() > 0.
ARG FAISS_GPU_PACKAGE=faiss-gpu-cu12
RUN pip install -e . "torch==2.14.1" && pip uninstall -y faiss-cpu && pip install "${FAISS_GPU_PACKAGE}" \
    && chmod +x /usr/local/bin/synthaudit-entrypoint \
    && useradd --create-home --uid 10001 synthaudit && mkdir -p /data/storage && chown -R synthaudit /data
USER synthaudit
# Large multipart uploads spool to disk: keep that on the storage volume (the entrypoint creates it).
ENV TMPDIR=/data/storage/tmp

ENTRYPOINT ["synthaudit-entrypoint"]
CMD ["synthaudit", "worker", "--concurrency", "1"]
