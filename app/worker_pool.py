"""Worker processes by device: one per GPU (CUDA_VISIBLE_DEVICES pinned), or one CPU worker.

`plan` decides, from the GPUs this machine shows, which processes to run, each with the
environment it needs and the queues it consumes (app.queue.worker_queues); `supervise` runs them,
starting one that dies again (later each time while it keeps dying, as `Kept` does), and passes
SIGTERM on, so each checkpoints its running job before the whole stops."""
import ctypes
import json
import logging
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from app.queue import worker_queues

log = logging.getLogger(__name__)
# A process that dies within STABLE_S of its start waits RESTART_DELAY_S, doubling each time up
# to MAX_DELAY_S, before it is started again (Kept; supervise's workers are Kepts too).
RESTART_DELAY_S, MAX_DELAY_S, STABLE_S = 0.5, 30.0, 60.0


@dataclass(frozen=True)
class WorkerSpec:
    """One worker process: its device class, the GPUs it holds, the environment it gets on top
    of ours, the queues it consumes."""
    device: str
    gpus: int
    env: dict[str, str] = field(default_factory=dict)

    @property
    def queues(self) -> list[str]:
        return worker_queues(self.device, self.gpus)


def device_class(worker_device: str, visible: int) -> tuple[str, int]:
    """(device class, GPUs held) of a worker set to `worker_device` (ADAPT_WORKER_DEVICE) that
    sees `visible` GPUs."""
    if worker_device == "cpu" or (worker_device == "auto" and not visible):
        return "cpu", 0
    if worker_device.startswith("cuda:"):
        return "gpu", 1  # one named device, whatever else is visible
    return "gpu", visible


def visible_gpus() -> list[str]:
    """The ids of the GPUs this process may use (as CUDA_VISIBLE_DEVICES names them, else
    0..n-1); [] on a machine without CUDA."""
    import torch  # deferred: only the launcher asks, and torch takes a while to import

    count = torch.cuda.device_count()
    named = os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = [d.strip() for d in named.split(",") if d.strip()] if named is not None else []
    return (ids if named is not None else [str(i) for i in range(count)])[:count]


def plan(devices: list[str], worker_gpus: str, gpus_per_worker: int,
         worker_device: str) -> list[WorkerSpec]:
    """The worker processes to run. worker_gpus (ADAPT_WORKER_GPUS / --gpus): "" = one process
    as configured; "all" = every GPU in `devices`, "N" = the first N, split into processes of
    gpus_per_worker GPUs each, each pinned to its own. With no GPU (or worker_device "cpu"): one
    CPU worker."""
    if not worker_gpus or worker_device == "cpu" or not devices:
        if worker_gpus and worker_gpus != "0" and worker_device != "cpu":
            log.warning("no GPU visible: running one CPU worker")
        device, gpus = device_class(worker_device, len(devices))
        return [WorkerSpec(device, gpus,
                           {"ADAPT_WORKER_DEVICE": "cpu"} if worker_gpus else {})]
    wanted = len(devices) if worker_gpus == "all" else int(worker_gpus)
    if wanted > len(devices):
        raise ValueError(f"{wanted} GPUs asked for, {len(devices)} visible "
                         f"({', '.join(devices)})")
    if wanted < gpus_per_worker:
        raise ValueError(f"{wanted} GPUs cannot make a worker of {gpus_per_worker} GPUs")
    used = devices[:wanted - wanted % gpus_per_worker]
    return [WorkerSpec("gpu", gpus_per_worker,
                       {"CUDA_VISIBLE_DEVICES": ",".join(used[i:i + gpus_per_worker]),
                        "ADAPT_WORKER_DEVICE": "cuda"})
            for i in range(0, len(used), gpus_per_worker)]


def classes_of(specs: list[WorkerSpec]) -> str:
    """The specs as an ADAPT_WORKER_CLASSES value, e.g. "gpu:1"."""
    return ",".join(dict.fromkeys(f"gpu:{s.gpus}" if s.device == "gpu" else "cpu"
                                  for s in specs))


def _die_with_parent() -> None:
    """In a worker child: get SIGTERM when its parent dies, however it dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def start(spec: WorkerSpec, command: list[str], nice: int = 0, **popen) -> subprocess.Popen:
    """Start one worker process with the spec's environment, `nice` added to its niceness; it
    dies with us."""
    def _prepare() -> None:
        _die_with_parent()
        if nice:
            os.nice(nice)

    return subprocess.Popen(command, env={**os.environ, **spec.env}, preexec_fn=_prepare,
                            **popen)


def supervise(specs: list[WorkerSpec], command: Callable[[WorkerSpec], list[str]],
              restart_delay_s: float = RESTART_DELAY_S, max_delay_s: float = MAX_DELAY_S,
              stable_s: float = STABLE_S) -> int:
    """Run one process per spec until SIGTERM/SIGINT, which goes on to every process (each
    checkpoints its running job and exits). Each is a Kept: one that dies on its own is started
    again, after a wait that doubles (restart_delay_s up to max_delay_s) while it keeps dying
    within stable_s of its start; it waits on its own thread, so the others stay supervised and
    a signal is acted on meanwhile. Each child has its own session, so a terminal's Ctrl-C
    reaches it once, through us."""
    kept = [Kept(spec, command(spec), restart_delay_s, name=_worker_name(spec),
                 max_delay_s=max_delay_s, stable_s=stable_s) for spec in specs]
    stopping: list[int] = []
    # The handler only records: terminate() takes a Kept's lock, which a second signal arriving
    # inside the first handler would then wait on for ever.
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    signal.signal(signal.SIGINT, lambda signum, _frame: stopping.append(signum))
    for spec, k in zip(specs, kept, strict=True):
        log.info("worker %d: %s, %s, queues %s", k.proc.pid, spec.device,
                 spec.env.get("CUDA_VISIBLE_DEVICES", "-"), ",".join(spec.queues))
    handled = 0
    while not (handled and all(k.proc.poll() is not None for k in kept)):
        if len(stopping) > handled:  # (again: a second Ctrl-C is passed on too)
            handled = len(stopping)
            for k in kept:
                k.terminate()
        time.sleep(0.2)
    for k in kept:
        k.stop()  # all have exited: this joins their threads
    return 0


def _worker_name(spec: WorkerSpec) -> str:
    gpus = spec.env.get("CUDA_VISIBLE_DEVICES")
    return f"GPU {gpus} worker" if gpus else f"{spec.device} worker"


class Kept:
    """One process kept running by a thread (next to the API, which has the main thread; or one
    of supervise's workers): started again after it exits on its own, until stop(). A process that keeps dying within stable_s of
    its start waits longer each time (restart_delay_s, doubling up to max_delay_s); one that
    stayed up that long waits restart_delay_s again. While it waits, down_file (when given) holds
    the wall-clock time of its next start (app.models_api.model_server reads it for Retry-After)."""

    def __init__(self, spec: WorkerSpec, command: list[str],
                 restart_delay_s: float = RESTART_DELAY_S, name: str = "process",
                 max_delay_s: float = MAX_DELAY_S, stable_s: float = STABLE_S,
                 down_file: Path | None = None):
        self.spec, self.command, self.restart_delay_s, self.name = \
            spec, command, restart_delay_s, name
        self.max_delay_s, self.stable_s, self.down_file = max_delay_s, stable_s, down_file
        self._quick_exits = 0  # exits in a row, each within stable_s of its start
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._start()
        self._thread = threading.Thread(target=self._watch, name=f"keep-{name}", daemon=True)
        self._thread.start()

    def _start(self) -> None:
        if self.down_file is not None:
            self.down_file.unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = start(self.spec, self.command, start_new_session=True)

    def _next_delay(self, uptime_s: float) -> float:
        """The wait before starting again a process that exited after uptime_s."""
        if uptime_s >= self.stable_s:
            self._quick_exits = 0
        delay = min(self.restart_delay_s * 2 ** self._quick_exits, self.max_delay_s)
        self._quick_exits = min(self._quick_exits + 1, 32)  # bounded: 2 ** n stays a float
        return delay

    def _watch(self) -> None:
        while not self._stopping.wait(0.1):
            if self.proc.poll() is None:
                continue
            if self._stopping.is_set():  # it exited on our SIGTERM: not a crash
                return
            uptime = time.monotonic() - self.started
            delay = self._next_delay(uptime)
            log.warning("%s %d exited (%s) after %.1f s; starting it again in %.1f s", self.name,
                        self.proc.pid, self.proc.returncode, uptime, delay)
            self._announce(delay)
            if self._stopping.wait(delay):
                return
            with self._lock:
                if not self._stopping.is_set():
                    self._start()

    def _announce(self, delay: float) -> None:
        """down_file ← when the next start is due (written whole: readers never see half)."""
        if self.down_file is None:
            return
        part = self.down_file.with_name(f"{self.down_file.name}.part")
        try:
            part.parent.mkdir(parents=True, exist_ok=True)
            part.write_text(json.dumps({"restart_at": time.time() + delay, "delay_s": delay}))
            os.replace(part, self.down_file)
        except OSError as exc:  # callers then hear the default Retry-After; keep watching
            log.warning("%s: could not write %s: %s", self.name, self.down_file, exc)

    def terminate(self) -> None:
        """No restart from now on, and SIGTERM to the process if it runs."""
        with self._lock:
            self._stopping.set()
        if self.proc.poll() is None:
            self.proc.terminate()

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM (SIGKILL past timeout), and no restart."""
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self._thread.join(timeout=timeout)
        if self.down_file is not None:
            self.down_file.unlink(missing_ok=True)
