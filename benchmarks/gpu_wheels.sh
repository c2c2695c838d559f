#!/usr/bin/env bash
# Fill .gpu-wheels/ (git-ignored) with the wheels benchmarks/gpu_check.sh installs on the
# accelerator machine, which has no network and has only Python 3.12 with torch, transformers,
# peft, safetensors, pyarrow and httpx (and their dependencies: numpy, tokenizers,
# huggingface_hub, accelerate, psutil, …) installed.
#
#   bash benchmarks/gpu_wheels.sh                      # cp312 → .gpu-wheels/ (for the device)
#   PYVER=3.11 TORCHVISION=0.29.1 DEST=/tmp/w311 bash benchmarks/gpu_wheels.sh   # a local test
#
# The list: pyproject.toml's runtime dependencies and their dependencies, minus what that machine
# has, minus what the check never imports (the weights packages: MiniLM is stood in by a
# random-init model, see gpu_check.sh; the export, explain, prune, quality and S3 stacks —
# onnx/onnxruntime, captum+matplotlib, torch-pruning, cleanlab+scikit-learn+scipy+pandas,
# boto3 — are imported inside the functions that use them). Versions are those the project is
# tested with (the repository's venv). pydantic, typer/click/rich travel even if the machine has
# them: the service needs pydantic >= 2.14, which an older transformers stack may not carry.
# torchvision is built against one torch release: 0.26.0 pairs with the device's torch 2.11
# (TORCHVISION=… to change it).
set -euo pipefail
cd "$(dirname "$0")/.."
PYVER="${PYVER:-3.12}"
DEST="${DEST:-.gpu-wheels}"
TORCHVISION="${TORCHVISION:-0.26.0}"
PIP="${PIP:-$(command -v pip3 || command -v pip)}"
WHEELS=(
  # the web API
  fastapi==0.165.0 starlette==1.10.0 python-multipart==0.0.34 uvicorn==0.54.0
  annotated-doc==0.0.7 opentelemetry-api==1.45.2 sniffio==1.3.1 prometheus-client==0.26.0
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  pydantic-settings==2.16.3 python-dotenv==1.2.4
  # the database and its migrations
  sqlalchemy==2.1.9 alembic==1.20.1 mako==1.4.3
  # the queue and the worker
  celery==5.7.0 kombu==5.7.0 billiard==4.3.2 vine==5.1.0 amqp==5.4.2 redis==8.1.0
  click==8.5.1 click-didyoumean==0.3.1 click-plugins==1.1.1.2 click-repl==0.4.1
  prompt-toolkit==3.0.53 wcwidth==0.9.4 python-dateutil==2.9.0.post0 six==1.17.0
  tzlocal==5.4.5
  # the CLI
  typer==0.29.2 rich==15.0.0 shellingham==1.5.4 pygments==2.21.0 markdown-it-py==4.3.0
  mdurl==0.1.2
  # images
  pillow==13.0.0 "torchvision==${TORCHVISION}" efficientnet-lite-pytorch==0.1.0
)
PLATFORMS=(--platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux_2_28_x86_64 --platform any)
mkdir -p "$DEST"
"$PIP" download --only-binary=:all: --python-version "$PYVER" "${PLATFORMS[@]}" --no-deps \
  -d "$DEST" "${WHEELS[@]}"
echo "$(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST"
