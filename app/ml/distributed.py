"""One job trained by several processes (torch.distributed): the few collectives the recipe needs
so that N processes train the model one process would, checkpoint for checkpoint.

Every process takes its share of each global batch (app.ml.data.shard_batches); DDP all-reduces
the gradients, which `step` rescales to the mean over the whole batch; rank 0 alone runs the
callbacks (progress, cancellation, checkpoints) and the others `follow` its decisions; the
validation set is evaluated in shares and gathered, so every metric covers all of it.
"""
import os
import random
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from app.ml.callbacks import Control

RngState = tuple  # (torch CPU state, python random state, CUDA state of this device or None)


@dataclass
class Group:
    rank: int
    world: int
    device: torch.device  # this process's device; collectives' tensors live there (nccl)

    @classmethod
    def join(cls, device: str, timeout_s: float) -> "Group":
        """Join the group the launcher describes in the environment (torchrun's RANK, WORLD_SIZE,
        LOCAL_RANK, MASTER_ADDR, MASTER_PORT): nccl with one GPU per process (cuda:LOCAL_RANK),
        gloo on CPU."""
        if device.startswith("cuda"):
            dev, backend = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0"))), "nccl"
            torch.cuda.set_device(dev)
        else:
            dev, backend = torch.device("cpu"), "gloo"
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
        return cls(dist.get_rank(), dist.get_world_size(), dev)

    @property
    def leader(self) -> bool:
        return self.rank == 0

    def close(self) -> None:
        dist.destroy_process_group()

    def wrap(self, model: torch.nn.Module) -> DistributedDataParallel:
        """DDP over the model's trainable parameters (rank 0's weights are broadcast to all)."""
        ids = [self.device] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        dist.barrier()

    def step(self, loss_sum: torch.Tensor, n: int, params: list[torch.Tensor]) -> tuple[float, int]:
        """After backward of this share's summed loss (DDP has averaged the gradients over the
        processes): rescale them to the gradient of the mean loss over the whole batch, whatever
        the shares' sizes, and return the batch's (summed loss, examples)."""
        t = torch.tensor([float(loss_sum.detach()), float(n)], dtype=torch.float64,
                         device=self.device)
        dist.all_reduce(t)
        total, count = t.tolist()
        for p in params:
            if p.grad is not None:
                p.grad.mul_(self.world / count)
        return total, int(count)

    def follow(self, control: Control) -> None:
        """Every process takes rank 0's decision: save a resume checkpoint, stop (and why)."""
        box = [(control.should_save, control.should_stop, control.stop_reason)]
        dist.broadcast_object_list(box, src=0, device=self.device)
        control.should_save, control.should_stop, control.stop_reason = box[0]

    def gather(self, obj) -> list:
        """obj from every process, in rank order (on every process)."""
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        return out

    def rng_states(self) -> list[RngState]:
        """Every process's RNG states (dropout, augmentation): a resume checkpoint keeps them
        all, so each process continues its own streams exactly."""
        cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
        return self.gather((torch.get_rng_state(), random.getstate(), cuda))

    def restore_rng(self, states: list[RngState]) -> None:
        cpu, py, cuda = states[self.rank]
        torch.set_rng_state(cpu)
        random.setstate(py)
        if cuda is not None and self.device.type == "cuda":
            torch.cuda.set_rng_state(cuda, self.device)

    def reseed(self, seed: int) -> None:
        """A fresh run: ranks past 0 draw their own dropout/augmentation streams (rank 0 keeps the
        single-process stream), a function of (seed, rank)."""
        if self.rank:
            torch.manual_seed(seed * 1_000_003 + 104_729 * self.rank)
            random.seed(seed * 1_000_003 + 104_729 * self.rank)
