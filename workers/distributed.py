"""A job with hyperparameters.processes = N > 1: the worker launches N training processes with
torch's elastic launcher (what torchrun runs: a c10d rendezvous on a free loopback port, RANK /
WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT in each process's environment), nccl with one
GPU per process (cuda:LOCAL_RANK), gloo on CPU, and waits for them.

Rank 0 records the job (progress, metrics, checkpoint rows, resume checkpoints, cancellation
checks); the other ranks only train. The worker process keeps the job's lease and writes the
outcome, and forwards a SIGTERM (as SIGUSR1) so rank 0 checkpoints and the group stops at the same
step. A rank that dies (SIGKILL, out of host memory), loses a peer or meets a transient error
fails the whole group: the launcher stops the others and the attempt is re-queued (GroupFailed,
transient), to resume from the last resume checkpoint; any other error fails the job with it. The ranks die with the worker (PR_SET_PDEATHSIG), so a killed worker
leaves no orphan training on: its lease lapses and the job is re-queued as before.
"""
import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import threading
from pathlib import Path

import torch
from torch.distributed import DistError
from torch.distributed.elastic.multiprocessing import DefaultLogsSpecs
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.launcher.api import LaunchConfig, elastic_launch

from app.config import get_settings
from app.ml.data import Splits
from app.ml.distributed import Group
from app.ml.recipe import TrainResult
from app.storage import get_storage
from workers import shutdown
from workers.lease import Lease
from workers.plan import GroupFailed, JobPlan, is_transient
from workers.resume import ResumeCheckpoints
from workers.training import train_plan

log = logging.getLogger(__name__)
TEMPFAIL = 75             # exit status of a rank whose error may pass (EX_TEMPFAIL): a peer
                          # vanished mid-collective, the database was briefly unreachable
GROUP_TIMEOUT_S = 3600    # a collective waiting longer than this fails (a hung rank); a dead
                          # rank is noticed at once by the launcher
LAUNCHER_SIGNAL = "SIGUSR2"  # the launcher's own signal handler goes there, not on SIGTERM


def launch(plan: JobPlan, splits: Splits, lease: Lease, work_dir: Path) -> TrainResult:
    """Train the plan with hyperparameters.processes processes; rank 0's result."""
    n = plan.config.hyperparameters["processes"]
    # object storage: the newest resume checkpoint is downloaded once, here, for every rank
    ResumeCheckpoints(get_storage(), plan.tenant, plan.job_id, work_dir).latest()
    config = LaunchConfig(
        min_nodes=1, max_nodes=1, nproc_per_node=n, run_id=f"{plan.job_id}-{lease.attempt}",
        rdzv_backend="c10d", rdzv_endpoint="127.0.0.1:0",  # a free port for every job
        max_restarts=0, start_method="spawn", monitor_interval=0.1,
        logs_specs=DefaultLogsSpecs(log_dir=str(work_dir / "ranks")),
        signals_to_handle=LAUNCHER_SIGNAL)
    log.info("job %s: launching %d training processes (%s)", plan.job_id, n,
             "nccl" if plan.config.device.startswith("cuda") else "gloo")
    before = signal.getsignal(getattr(signal, LAUNCHER_SIGNAL))
    done = threading.Event()
    forwarder = threading.Thread(target=_forward_shutdown, args=(done,), daemon=True,
                                 name=f"ranks-{plan.job_id}")
    forwarder.start()
    try:
        results = elastic_launch(config, _rank_main)(plan, splits, lease.attempt, work_dir,
                                                     os.getpid())
    except ChildFailedError as exc:
        raise _failure(exc) from None
    finally:
        done.set()
        forwarder.join(timeout=5)
        if threading.current_thread() is threading.main_thread():
            signal.signal(getattr(signal, LAUNCHER_SIGNAL), before)
    return results[0]


def _failure(exc: ChildFailedError) -> Exception:
    """GroupFailed when a rank was killed or met a transient error (the attempt is retried),
    else the first rank's error (the job fails with it)."""
    failures = exc.failures
    died = {r: f for r, f in failures.items() if f.exitcode < 0 or f.exitcode == TEMPFAIL}
    if died:
        what = ", ".join(f"rank {r}: " + (f"killed by {f.signal_name()}" if f.exitcode < 0
                                           else "transient error") for r, f in sorted(died.items()))
        return GroupFailed(f"a training process stopped ({what})")
    rank, first = exc.get_first_failure()
    message = f"training process {rank} failed: {first.message}"
    return torch.OutOfMemoryError(message) if "OutOfMemoryError" in message else RuntimeError(
        message)


def _forward_shutdown(done: threading.Event) -> None:
    """SIGTERM reached the worker: tell the ranks (rank 0 checkpoints and stops the group), each
    once it is ready for it (named adapt-rankN: its SIGUSR1 handler is in place), until the
    launch is over."""
    told: set[int] = set()
    while not done.is_set():
        if not shutdown.requested.wait(0.2):
            continue
        for child in multiprocessing.active_children():
            try:
                ready = Path(f"/proc/{child.pid}/comm").read_text().startswith("adapt-rank")
                if ready and child.pid not in told:
                    os.kill(child.pid, signal.SIGUSR1)
                    told.add(child.pid)
            except OSError:  # it has just exited
                continue
        done.wait(0.2)


def _prctl(option: int, arg) -> None:
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(option, arg)
    except OSError:
        pass


def _rank_main(plan: JobPlan, splits: Splits, attempt: int, work_dir: Path,
               worker_pid: int) -> TrainResult | None:
    """One training process (spawned by the launcher): join the group and train."""
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: die with the worker
    if os.getppid() != worker_pid:
        os._exit(1)
    rank = int(os.environ["RANK"])
    signal.signal(signal.SIGUSR1, lambda *_: shutdown.requested.set())
    # PR_SET_NAME, once SIGUSR1 is handled (the worker waits for it): `ps` tells the ranks apart
    _prctl(15, f"adapt-rank{rank}".encode())
    settings = get_settings()
    if not plan.config.device.startswith("cuda") and not settings.torch_threads:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // int(os.environ["WORLD_SIZE"])))
    try:
        group = Group.join(plan.config.device, GROUP_TIMEOUT_S)
        # The worker renews the lease; rank 0's writes are fenced by the attempt, as in one process
        result = train_plan(plan, splits, Lease(plan.job_id, attempt, settings.lease_s),
                            work_dir, group)
    except Exception as exc:
        if not isinstance(exc, DistError) and not is_transient(exc):
            raise  # the launcher records it: the job fails with its message
        log.warning("rank %d: %s", rank, exc)
        sys.exit(TEMPFAIL)
    group.close()
    return result if group.leader else None
