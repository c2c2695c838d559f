"""One worker process per GPU, worked out on a machine without one by giving `plan` the GPU ids
a GPU machine would show: each process is pinned to its own GPU(s) with CUDA_VISIBLE_DEVICES and
consumes the queues of its class; a CPU-only machine runs one CPU worker. The supervisor restarts
a process that dies and passes SIGTERM on to all of them; one that keeps dying is started less and
less often, while the others stay supervised. SIGTERM's checkpoint time is bounded. A process kept
running beside the API (Kept) that keeps crashing is started less and less often."""
import json
import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from app import serve, worker_pool
from app.config import Settings
from app.worker_pool import WorkerSpec, classes_of, device_class, plan
from workers import shutdown

GPU, CPU = ["training", "training.gpu"], ["training", "training.cpu"]


def test_all_gpus_get_one_pinned_worker_each():
    specs = plan(["0", "1", "2", "3"], "all", 1, "auto")
    assert [s.env for s in specs] == [{"CUDA_VISIBLE_DEVICES": str(i),
                                       "ADAPT_WORKER_DEVICE": "cuda"} for i in range(4)]
    assert all(s.queues == GPU and (s.device, s.gpus) == ("gpu", 1) for s in specs)
    assert classes_of(specs) == "gpu:1"


def test_the_gpus_already_visible_are_the_ones_shared_out():
    """Under CUDA_VISIBLE_DEVICES=2,5 (or a Kubernetes GPU allocation) the ids are kept."""
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan(["2", "5"], "all", 1, "auto")] == \
        ["2", "5"]
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in plan(["0", "1", "2"], "2", 1, "cuda")] == \
        ["0", "1"]


def test_multi_gpu_workers_take_the_multi_gpu_queues():
    specs = plan([str(i) for i in range(8)], "all", 4, "auto")
    assert [s.env["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0,1,2,3", "4,5,6,7"]
    assert specs[0].queues == [*GPU, "training.gpu.2", "training.gpu.3", "training.gpu.4"]
    assert classes_of(specs) == "gpu:4"
    assert len(plan(["0", "1", "2"], "3", 2, "auto")) == 1  # the odd GPU stays idle


def test_asking_for_more_gpus_than_visible_is_refused(monkeypatch):
    with pytest.raises(ValueError, match="5 GPUs asked for, 4 visible"):
        plan(["0", "1", "2", "3"], "5", 1, "auto")
    with pytest.raises(ValueError, match="cannot make a worker of 2"):
        plan(["0"], "1", 2, "auto")
    monkeypatch.setattr(worker_pool, "visible_gpus", lambda: ["0"])
    with pytest.raises(SystemExit, match="--gpus: 2 GPUs asked for, 1 visible"):
        serve.worker_plan("2")  # adapt-serve --worker-only --gpus 2 stops with the reason


def test_a_cpu_only_machine_runs_one_cpu_worker():
    (spec,) = plan([], "all", 1, "auto")
    assert (spec.device, spec.gpus, spec.queues) == ("cpu", 0, CPU)
    assert spec.env == {"ADAPT_WORKER_DEVICE": "cpu"} and classes_of([spec]) == "cpu"
    (spec,) = plan(["0", "1"], "all", 1, "cpu")  # told to use the CPU: GPUs are ignored
    assert spec.queues == CPU


def test_without_gpus_option_one_worker_runs_as_configured():
    assert plan(["0", "1"], "", 1, "auto") == [WorkerSpec("gpu", 2, {})]
    assert plan(["0", "1"], "", 1, "cuda:1") == [WorkerSpec("gpu", 1, {})]
    assert plan([], "", 1, "auto") == [WorkerSpec("cpu", 0, {})]
    assert device_class("cpu", 4) == ("cpu", 0)


def test_the_worker_command_consumes_its_queues():
    command = serve.worker_command(GPU)
    assert command[command.index("-Q") + 1] == "training,training.gpu,exports,quality"
    default = serve.worker_command()  # this machine: no GPU
    assert default[default.index("-Q") + 1] == "training,training.cpu,exports,quality"


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,7")
    assert worker_pool.visible_gpus() == ["3", "7"]
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES")
    assert worker_pool.visible_gpus() == ["0", "1"]


def test_worker_classes_setting_is_parsed_and_checked():
    assert Settings(worker_classes="cpu, gpu:4,gpu").declared_workers == {"cpu": 0, "gpu": 4}
    assert Settings(worker_classes="").declared_workers == {}
    with pytest.raises(ValueError):
        Settings(worker_classes="tpu")


CHILD = """
import os, pathlib, signal, sys, time
out, dev = pathlib.Path(sys.argv[1]), os.environ["CUDA_VISIBLE_DEVICES"]
def log(line):
    with open(out / "log", "a") as f:
        f.write(line + "\\n")
first = not (out / dev).exists()
(out / dev).touch()
log(f"start {dev} {' '.join(sys.argv[2:])}")
if first and dev == "1":
    sys.exit(3)  # dies on its own once
signal.signal(signal.SIGTERM, lambda *_: (log(f"term {dev}"), sys.exit(0)))
while True:
    time.sleep(0.05)
"""
SUPERVISOR = """
import sys
from app.worker_pool import plan, supervise
child = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
sys.exit(supervise(plan(["0", "1"], "all", 1, "auto"), lambda s: child + s.queues,
                   restart_delay_s=0.1))
"""


def test_the_supervisor_restarts_a_dead_worker_and_passes_sigterm_on(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", SUPERVISOR, CHILD, str(tmp_path)])
    log = tmp_path / "log"
    try:
        deadline = time.time() + 60
        while (not log.exists() or log.read_text().count("start") < 3) and time.time() < deadline:
            time.sleep(0.1)
        assert sorted(log.read_text().splitlines()) == [
            "start 0 training training.gpu", "start 1 training training.gpu",
            "start 1 training training.gpu"]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    assert sorted(log.read_text().splitlines())[-2:] == ["term 0", "term 1"]


ONCE = """
import os, pathlib, signal, sys, time
out, dev = pathlib.Path(sys.argv[1]), os.environ["CUDA_VISIBLE_DEVICES"]
def log(line):
    with open(out / "log", "a") as f:
        f.write(line + "\\n")
log(f"start {dev}")
if dev == "1":
    sys.exit(3)  # dies at once, every time
signal.signal(signal.SIGTERM, lambda *_: (log(f"term {dev}"), sys.exit(0)))
while not (out / "exit0").exists():
    time.sleep(0.05)
(out / "exit0").unlink()
sys.exit(4)  # exits once, when told
"""
BACKING_OFF = """
import sys
from app.worker_pool import plan, supervise
child = [sys.executable, "-c", sys.argv[1], sys.argv[2]]
sys.exit(supervise(plan(["0", "1"], "all", 1, "auto"), lambda s: child, restart_delay_s=0.5,
                   stable_s=30))
"""


def _lines(path, line: str, n: int, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not path.exists() or path.read_text().splitlines().count(line) < n:
        assert time.time() < deadline, f"{n}× {line!r} expected within {timeout} s"
        time.sleep(0.05)


def test_a_worker_that_keeps_dying_waits_longer_each_time_and_holds_up_no_other(tmp_path):
    """GPU 1's worker dies at once every time: it is started again after 0.5, 1, 2, 4 s, then
    waits 8 s. Meanwhile GPU 0's worker exits once and is started again after its own first
    wait, and SIGTERM stops the supervisor without GPU 1's worker being started again."""
    log, err = tmp_path / "log", tmp_path / "stderr"
    with open(err, "w") as stderr:  # (its warnings: no logging set up, Python prints them)
        proc = subprocess.Popen([sys.executable, "-c", BACKING_OFF, ONCE, str(tmp_path)],
                                stderr=stderr)
    try:
        _lines(log, "start 1", 5)  # at 0 + 0.5 + 1 + 2 + 4 s; its next wait is 8 s
        (tmp_path / "exit0").touch()
        _lines(log, "start 0", 2)
        assert log.read_text().splitlines().count("start 1") == 5  # still waiting
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
    lines = log.read_text().splitlines()
    assert lines.count("start 1") == 5 and lines.count("start 0") == 2
    assert lines[-1] == "term 0"
    waits: dict[str, list[float]] = {}
    for line in err.read_text().splitlines():
        if "starting it again in" in line:  # "GPU 1 worker 123 exited (3) … again in 0.5 s"
            waits.setdefault(line.split()[1], []).append(float(line.split()[-2]))
    assert waits == {"1": [0.5, 1.0, 2.0, 4.0, 8.0], "0": [0.5]}


def test_sigterm_gives_the_job_a_bounded_time_to_checkpoint():
    before = signal.getsignal(signal.SIGTERM)
    gave_up = threading.Event()
    try:
        shutdown.install(0.2, give_up=lambda grace_s: gave_up.set())
        os.kill(os.getpid(), signal.SIGTERM)
        assert shutdown.requested.is_set()  # the running job is told to checkpoint now
        assert not gave_up.is_set()
        assert gave_up.wait(10)  # and the process would exit once the time is up
    finally:
        signal.signal(signal.SIGTERM, before)
        shutdown.requested.clear()


def test_the_cpu_worker_beside_the_api_runs_nicer(monkeypatch):
    """adapt-serve's own CPU worker yields the cores to predictions and polls: its niceness is
    ADAPT_WORKER_NICE above the API's (a 0 leaves it equal)."""
    from app.config import get_settings

    settings = get_settings()
    for name in ("worker_classes", "bind_host", "model_server"):  # main() sets them: restore
        monkeypatch.setattr(settings, name, getattr(settings, name))
    monkeypatch.setattr(settings, "worker_classes", "cpu")
    monkeypatch.setattr(settings, "worker_device", "cpu")
    monkeypatch.setenv("ADAPT_BIND_HOST", "127.0.0.1")
    monkeypatch.setattr(serve, "worker_command",
                        lambda queues=None: [sys.executable, "-c", "import time; time.sleep(60)"])
    started, real_start = [], worker_pool.start
    monkeypatch.setattr(worker_pool, "start",
                        lambda *a, **k: started.append(real_start(*a, **k)) or started[-1])
    seen = []
    monkeypatch.setattr(serve.uvicorn, "run", lambda *a, **k: seen.extend(
        os.getpriority(os.PRIO_PROCESS, p.pid) for p in started))
    mine = os.getpriority(os.PRIO_PROCESS, 0)
    for nice in (7, 0):
        monkeypatch.setattr(settings, "worker_nice", nice)
        seen.clear(), started.clear()
        serve.main(["--predict-in-process"])
        assert seen == [min(mine + nice, 19)]
        assert started[0].poll() is not None  # stopped with the API


def test_the_cpu_worker_beside_the_api_reads_its_model_servers_activity(monkeypatch):
    """adapt-serve's CPU worker is pointed at the activity file of the model server on the same
    cores (it pauses between training steps while that server holds requests), and its OpenMP
    threads do not spin on those cores while they wait."""
    from app.config import get_settings
    from app.models_api import model_server

    settings = get_settings()
    for name in ("worker_classes", "bind_host", "model_server", "predict_activity_file"):
        monkeypatch.setattr(settings, name, getattr(settings, name))
    monkeypatch.setattr(settings, "worker_classes", "cpu")
    monkeypatch.setattr(settings, "worker_device", "cpu")
    monkeypatch.setattr(settings, "model_server", "")
    for name in ("ADAPT_BIND_HOST", "ADAPT_PREDICT_ACTIVITY_FILE", "ADAPT_MODEL_SERVER"):
        monkeypatch.setenv(name, "")
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.setattr(serve, "start_model_servers", lambda: [])
    monkeypatch.setattr(serve, "worker_command", lambda queues=None: [
        sys.executable, "-c", "import os; print(os.environ['ADAPT_PREDICT_ACTIVITY_FILE'], "
                              "os.environ['OMP_WAIT_POLICY'])"])
    outs = []
    real_start = worker_pool.start
    monkeypatch.setattr(worker_pool, "start", lambda *a, **k: outs.append(
        real_start(*a, stdout=subprocess.PIPE, text=True, **k)) or outs[-1])
    seen = []  # what the worker read, while the API runs
    monkeypatch.setattr(serve.uvicorn, "run",
                        lambda *a, **k: seen.append(outs[0].stdout.readline().strip()))
    serve.main([])
    [(socket, _)] = model_server.plan(settings.data_dir, [], "cpu")
    assert seen == [f"{model_server.activity_file(socket)} PASSIVE"]


def _kept(tmp_path, script: str, **backoff) -> worker_pool.Kept:
    """A Kept process running `script` (sh), which logs its starts to tmp_path/starts."""
    starts = tmp_path / "starts"
    return worker_pool.Kept(WorkerSpec("test", 0), ["sh", "-c", f"date +%s.%N >> {starts}; "
                                                    + script], name="fake", **backoff)


def _wait_starts(tmp_path, n: int, timeout: float = 60) -> list[float]:
    deadline, starts = time.time() + timeout, tmp_path / "starts"
    while time.time() < deadline:
        found = [float(x) for x in starts.read_text().split()] if starts.exists() else []
        if len(found) >= n:
            return found
        time.sleep(0.05)
    raise AssertionError(f"{n} starts expected within {timeout} s")


def _delays(caplog) -> list[float]:
    return [float(r.getMessage().rsplit(" in ", 1)[1].removesuffix(" s"))
            for r in caplog.records if "starting it again in" in r.getMessage()]


def test_a_process_that_keeps_crashing_is_started_again_less_and_less_often(tmp_path, caplog):
    caplog.set_level("WARNING", logger="app.worker_pool")
    kept = _kept(tmp_path, "exit 3", restart_delay_s=0.2, max_delay_s=0.8, stable_s=30)
    try:
        starts = _wait_starts(tmp_path, 6)
    finally:
        kept.stop()
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    for gap, delay in zip(gaps, [0.2, 0.4, 0.8, 0.8, 0.8]):
        assert delay <= gap < delay + 5, gaps  # (a busy machine only ever adds)
    assert _delays(caplog)[:5] == [0.2, 0.4, 0.8, 0.8, 0.8]
    assert "exited (3) after" in caplog.records[0].getMessage()


def test_a_process_that_stayed_up_a_while_waits_the_first_delay_again(tmp_path, caplog):
    caplog.set_level("WARNING", logger="app.worker_pool")
    count = tmp_path / "count"
    # crashes at once twice, stays up past stable_s the third time, then crashes at once again
    script = (f"n=$(cat {count} 2>/dev/null || echo 0); echo $((n + 1)) > {count}; "
              "[ \"$n\" -eq 2 ] && sleep 3; exit 3")
    kept = _kept(tmp_path, script, restart_delay_s=0.2, max_delay_s=10, stable_s=2)
    try:
        _wait_starts(tmp_path, 5)
    finally:
        kept.stop()
    assert _delays(caplog)[:4] == [0.2, 0.4, 0.2, 0.4]


def test_while_it_waits_the_next_start_is_written_down(tmp_path):
    down = tmp_path / "server.sock.down"
    kept = _kept(tmp_path, "exit 3", restart_delay_s=3, down_file=down)
    try:
        deadline = time.time() + 30
        while not down.exists() and time.time() < deadline:
            time.sleep(0.02)
        due = json.loads(down.read_text())["restart_at"] - time.time()
        assert 1 < due <= 3
        _wait_starts(tmp_path, 2)
        assert not down.exists() or json.loads(down.read_text())["restart_at"] > time.time()
    finally:
        kept.stop()
    assert not down.exists()
