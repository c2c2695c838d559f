#!/usr/bin/env bash
# GPU check (issue 12): plain loop vs recipe vs jobs through the API, side by side in one run on
# the accelerator machine, with the GPU's utilisation during each phase: about 2 minutes on an
# H200, service start-up included (benchmarks/README.md, "GPU check", has its output).
#
# Here (with network), once:   bash benchmarks/gpu_wheels.sh      # fills .gpu-wheels/ (ignored)
# On the device machine (the `run` tool, carry [".gpu-wheels"]):   bash benchmarks/gpu_check.sh
# A CPU dry run of the same pipeline at tiny sizes (no nvidia-smi needed):
#   DEVICE=cpu bash benchmarks/gpu_check.sh          # or: bash benchmarks/gpu_check.sh --quick
#
# That machine has no network and only Python 3.12 with torch, transformers, peft, safetensors,
# pyarrow and httpx: the service's other dependencies are installed from .gpu-wheels/ into a
# temporary --target directory put first on PYTHONPATH; the S3, ONNX-export and data-quality
# stacks (over 100 MB) do not travel: benchmarks/gpu_stubs.py stands in for them, last on the path. The base models are random-init
# stand-ins (benchmarks/gpu_check.py says how); the text data is the Rotten Tomatoes fixture
# (3,200 reviews, 1 epoch), the image data 2,000 synthetic 224x224 JPEGs in 8 classes.
# nvidia-smi is sampled every 0.5 s in the background; the table gives its mean and max per phase.
# Environment: DEVICE (cuda | cpu; default cuda when nvidia-smi sees a GPU), PYTHON (python3),
# WHEELS (.gpu-wheels), WORK (a fresh temporary directory); arguments go to gpu_check.py.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
PYTHON="${PYTHON:-python3}"
WHEELS="${WHEELS:-$ROOT/.gpu-wheels}"
WORK="${WORK:-$(mktemp -d /tmp/gpu-check.XXXXXX)}"
ARGS=("$@")
if [[ -z "${DEVICE:-}" ]]; then
  if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then DEVICE=cuda; else DEVICE=cpu; fi
fi
if [[ "$DEVICE" == cpu && ! " ${ARGS[*]:-} " =~ " --quick " ]]; then ARGS+=(--quick); fi
echo "gpu_check: device $DEVICE, work dir $WORK, $($PYTHON --version 2>&1)"
nvidia-smi -L 2>/dev/null || true

# The service's dependencies: wheels → a --target directory (no network, no resolver).
SITE="$WORK/site"
if compgen -G "$WHEELS/*.whl" >/dev/null; then
  t0=$(date +%s)
  if "$PYTHON" -m pip --version >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --disable-pip-version-check \
      --target "$SITE" "$WHEELS"/*.whl
  else  # no pip: a wheel is a ZIP of what goes into site-packages
    "$PYTHON" - "$SITE" "$WHEELS"/*.whl <<'PY'
import sys, zipfile
for w in sys.argv[2:]:
    zipfile.ZipFile(w).extractall(sys.argv[1])
PY
  fi
  echo "installed $(ls "$WHEELS"/*.whl | wc -l) wheels into $SITE in $(( $(date +%s) - t0 )) s"
else
  echo "no wheels in $WHEELS: using the interpreter's own packages"
fi
# Stand-ins (last on the path) for the export, quality and S3 stacks the worker imports at start-up.
"$PYTHON" benchmarks/gpu_stubs.py "$WORK/stubs"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}:$WORK/stubs"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export TRANSFORMERS_VERBOSITY=error HF_HUB_DISABLE_PROGRESS_BARS=1
export ADAPT_WORKER_DEVICE=auto
# torchvision's wheel carries C++ ops built for one CUDA major version; where that is not the
# machine's torch's, importing it fails: the ops (nms and such) are not used here, so drop them.
if ! "$PYTHON" -c "import torchvision" 2>/dev/null && [[ -d "$SITE/torchvision" ]]; then
  echo "torchvision does not import with this torch: removing its compiled ops"
  rm -f "$SITE"/torchvision/_C*.so "$SITE"/torchvision/image*.so "$SITE"/torchvision/video_reader*.so
  "$PYTHON" -c "import torchvision; print('torchvision', torchvision.__version__, 'without its ops')"
fi
"$PYTHON" -c "import app.serve, workers.tasks" || { echo "the service does not import"; exit 1; }

# GPU utilisation sampler: "epoch seconds, util %, memory MiB" every 0.5 s.
GPU_LOG="$WORK/gpu.csv"
SAMPLER=""
if [[ "$DEVICE" != cpu ]] && command -v nvidia-smi >/dev/null; then
  ( while :; do
      echo "$(date +%s.%N),$(nvidia-smi --query-gpu=utilization.gpu,memory.used \
        --format=csv,noheader,nounits -i 0 2>/dev/null | tr -d ' ')"
      sleep 0.5
    done ) >"$GPU_LOG" &
  SAMPLER=$!
fi
cleanup() { [[ -n "$SAMPLER" ]] && kill "$SAMPLER" 2>/dev/null || true; }
trap cleanup EXIT

start=$(date +%s)
"$PYTHON" benchmarks/gpu_check.py --device "$DEVICE" --worker-device auto --work "$WORK/run" \
  --gpu-log "$GPU_LOG" "${ARGS[@]}"
echo "gpu_check: $(( $(date +%s) - start )) s for the measurements; phases in $WORK/run/gpu_check.json"
