"""Resume checkpoints: everything a run needs to continue exactly where it stopped — trainable
weights and buffers (batch-norm statistics move in training) as safetensors, optimizer and
scheduler, RNG states, step and data position — written atomically (write, fsync, rename) so a kill mid-write never leaves a half checkpoint behind."""
import json
import os
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from app.ml.callbacks import TrainState

PREFIX = "step-"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save(root: Path, *, model: torch.nn.Module, optimizer, scheduler, state: TrainState,
         position: dict, keep_last: int, rank_rngs: list | None = None) -> Path:
    """Write root/step-NNNNNNNN atomically; keep the newest keep_last. rank_rngs: every
    process's RNG states, for a job trained by several (app.ml.distributed)."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{state.step:08d}"
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    weights = {n: p.detach().cpu().contiguous() for n, p in model.named_parameters()
               if p.requires_grad}
    save_file(weights, str(tmp / "weights.safetensors"))
    buffers = {n: b.detach().cpu().clone(memory_format=torch.contiguous_format)
               for n, b in model.named_buffers()}
    if buffers:
        save_file(buffers, str(tmp / "buffers.safetensors"))
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(), "python_rng": random.getstate(),
                "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "rank_rngs": rank_rngs or []},
               tmp / "optim.pt")
    saved = {**asdict(state), "loss_sum": float(state.loss_sum)}
    (tmp / "state.json").write_text(json.dumps({"state": saved, "position": position}))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    if final.exists():  # a re-run of the same step: the new copy replaces it
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for old in sorted(p for p in root.iterdir() if p.name.startswith(PREFIX))[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def latest(root: Path) -> Path | None:
    """The newest complete resume checkpoint under root (temp dirs are never complete)."""
    if not root.is_dir():
        return None
    done = sorted(p for p in root.iterdir() if p.name.startswith(PREFIX)
                  and (p / "state.json").is_file())
    return done[-1] if done else None


def load(path: Path, *, model: torch.nn.Module, optimizer, scheduler) -> tuple[TrainState, dict]:
    """Restore weights, optimizer, scheduler and RNG states; returns (state, position), the
    position with "rank_rngs" (every process's RNG states; [] from a single process)."""
    weights = load_file(str(path / "weights.safetensors"))
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
        if (path / "buffers.safetensors").is_file():  # absent in checkpoints from before
            buffers = dict(model.named_buffers())
            for name, value in load_file(str(path / "buffers.safetensors")).items():
                buffers[name].copy_(value)
    blob = torch.load(path / "optim.pt", weights_only=True)
    optimizer.load_state_dict(blob["optimizer"])
    scheduler.load_state_dict(blob["scheduler"])
    torch.set_rng_state(blob["torch_rng"])
    random.setstate(_as_tuple(blob["python_rng"]))
    if blob["cuda_rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(blob["cuda_rng"])
    meta = json.loads((path / "state.json").read_text())
    rank_rngs = [(cpu, _as_tuple(py), cuda) for cpu, py, cuda in blob.get("rank_rngs", [])]
    meta["state"].pop("train_loss", None)  # checkpoints from before loss_sum / loss_n
    return TrainState(**meta["state"]), {**meta["position"], "rank_rngs": rank_rngs}


def _as_tuple(value):
    return tuple(_as_tuple(v) for v in value) if isinstance(value, list | tuple) else value
