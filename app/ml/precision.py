"""Reduced precision where the hardware computes it natively: bf16 on GPUs that have it (fp16 on
older ones) and on CPUs with AMX; float32 elsewhere (bf16 emulated on a CPU without AMX is slower
than float32, so "auto" never picks it there). Training on such hardware times a few steps in each
and keeps bf16 only where it was faster for the model at hand (faster_of)."""
import contextlib
import time
from functools import lru_cache
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}


@lru_cache(maxsize=None)
def cpu_has_amx() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "amx_bf16" in flags


def autocast_dtype(device: str, setting: str = "auto") -> torch.dtype | None:
    """The dtype to autocast to on `device` for setting "auto" | "fp32" | "bf16" | "fp16";
    None means plain float32."""
    if setting == "fp32":
        return None
    if setting in DTYPES:
        return DTYPES[setting]
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if cpu_has_amx() else None


def pad_multiple(device: str) -> int:
    """Token lengths are padded to a multiple of this: 16 on a GPU, where every new sequence
    length costs kernel selection and an attention plan (issue 12 measured the defaults at 273
    samples/s on a fresh worker's first job, 665 padded to 16); 1 on a CPU, where padding is only
    more work."""
    return 16 if device.startswith("cuda") else 1


def configure_device(device: str) -> None:
    """Process-wide settings for training on `device`: on CUDA, the cuDNN attention backend off
    (it builds a plan per new shape: 273 samples/s against 735 without it on an H200, issue 12),
    leaving PyTorch's flash / memory-efficient kernels."""
    if device.startswith("cuda"):
        torch.backends.cuda.enable_cudnn_sdp(False)


def autocast(device: str, dtype: torch.dtype | None):
    """An autocast context for `dtype` on `device`, or nothing for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def train_autocast_dtype(device: str, setting: str = "auto") -> torch.dtype | None:
    """Training autocasts to bf16 only: fp16 would need loss scaling, bf16 has float32's range."""
    dtype = autocast_dtype(device, setting)
    return dtype if dtype == torch.bfloat16 else None


def measured_choice(device: str) -> bool:
    """Whether training on `device` measures bf16 against float32 before choosing (faster_of):
    on a GPU, where a step costs milliseconds and the answer depends on the model and batch; on an
    AMX CPU bf16 stays the rule (measured faster there, benchmarks/train_throughput.py) and a
    trial's 24 steps would cost seconds."""
    return device.startswith("cuda")


def faster_of(step, candidate: torch.dtype, sync, warmup: int = 2,
              timed: int = 5) -> tuple[torch.dtype | None, dict[str, float]]:
    """`candidate` if `step(dtype)` (one forward and backward) is measured faster in it than in
    float32, else None (float32), with each one's best milliseconds per step. The two are timed
    interleaved, twice each after `warmup` untimed steps, and float32 wins unless the candidate
    saves at least 3 %: reduced precision must pay for the rounding it adds. On an H200 bf16
    autocast was slower than float32 for MiniLM (1,985 against 3,059 samples/s at batch 64) and
    faster for a BERT-base-sized encoder (+7 %): no rule of thumb, so each job measures."""
    names = {None: "fp32", candidate: DTYPE_NAMES[candidate]}
    best = {dtype: float("inf") for dtype in names}
    for dtype in names:
        for _ in range(warmup):
            step(dtype)
    for _ in range(2):
        for dtype in names:
            sync()
            t0 = time.perf_counter()
            for _ in range(timed):
                step(dtype)
            sync()
            best[dtype] = min(best[dtype], (time.perf_counter() - t0) / timed)
    chosen = candidate if best[candidate] < 0.97 * best[None] else None
    return chosen, {names[d]: round(s * 1000, 3) for d, s in best.items()}
