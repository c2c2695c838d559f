"""Reduced precision where the hardware computes it natively: bf16 on GPUs that have it (fp16 on
older ones) and on CPUs with AMX; float32 elsewhere (bf16 emulated on a CPU without AMX is slower
than float32, so "auto" never picks it there)."""
import contextlib
from functools import lru_cache
from pathlib import Path

import torch

DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def autocast(device: str, dtype: torch.dtype | None):
    """An autocast context for `dtype` on `device`, or nothing for float32."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=torch.device(device).type, dtype=dtype)


def train_autocast_dtype(device: str, setting: str = "auto") -> torch.dtype | None:
    """Training autocasts to bf16 only: fp16 would need loss scaling, bf16 has float32's range."""
    dtype = autocast_dtype(device, setting)
    return dtype if dtype == torch.bfloat16 else None
