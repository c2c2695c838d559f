"""Leftovers of crashed processes: staging and work directories whose owner process is dead are
removed by one janitor pass (past the grace period); a live owner's are kept; empty dataset
directories (refused or deleted datasets) go too."""
import os
import shutil
import subprocess
import sys
import time

from helpers import toy_csv

from app import janitor
from app.config import get_settings
from app.storage import get_storage
from workers.maintenance import reconcile


def dead_owner_tag() -> str:
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(0.2)"])
    tag = janitor.owner_tag(proc.pid)  # read while it runs, as its own directories would be named
    proc.wait()
    return tag


def aged(path, seconds: float = 3600):
    t = time.time() - seconds
    os.utime(path, (t, t))
    return path


def test_one_pass_removes_what_dead_processes_left_and_keeps_the_living(client):
    data = get_settings().data_dir
    staging_root, work_root = get_storage().root / "tmp", data / "work"
    work_root.mkdir(parents=True, exist_ok=True)
    dead = dead_owner_tag()

    stale_upload = staging_root / f"{dead}abc123"
    stale_upload.mkdir()
    (stale_upload / "upload").write_bytes(b"text,label\npartial")
    stale_work = work_root / f"{dead}job_x-abc"
    (stale_work / "resume" / "step-10.tmp").mkdir(parents=True)
    (stale_work / "resume" / "step-10.tmp" / "model.safetensors").write_bytes(b"partial")
    young = work_root / f"{dead}job_y-young"  # dead owner, but within the grace period
    young.mkdir()
    live_upload = get_storage().staging_dir()  # this process's, as an upload in progress
    live_work = janitor.owned_dir(work_root, "job_z-")
    assert live_upload.name.startswith(janitor.owner_tag())
    empty_ds = data / "blobs" / "datasets" / "t-janitor" / "ds_refused"
    empty_ds.mkdir(parents=True)
    kept_ds = data / "blobs" / "datasets" / "t-janitor" / "ds_ready"
    kept_ds.mkdir()
    (kept_ds / "data.csv").write_text("text,label\n")
    for p in (stale_upload, stale_work, live_upload, live_work, empty_ds, kept_ds):
        aged(p)

    swept = set(reconcile()["swept"])  # the maintenance pass (as run at worker start-up)
    # the session's worker runs the same pass every second on this data dir: what it swept
    # first is gone too, and the pass reports only what it removed itself
    for gone in (stale_upload, stale_work, empty_ds):
        assert not gone.exists(), gone
    assert not swept & {young, live_upload, live_work, kept_ds}
    try:
        for kept in (young, live_upload, live_work, kept_ds):
            assert kept.exists(), kept
        assert janitor.sweep(data) == []  # nothing left to do
    finally:
        for p in (young, live_upload, live_work, kept_ds.parent):
            shutil.rmtree(p, ignore_errors=True)


def test_a_deleted_datasets_directory_goes_too(client):
    ds = client.post("/v1/datasets", files={"file": ("j.csv", toy_csv(8))}).json()
    assert client.delete(f"/v1/datasets/{ds['id']}").status_code == 200
    [left] = (get_settings().data_dir / "blobs" / "datasets").glob(f"*/{ds['id']}")
    assert not any(left.iterdir())  # the file is gone, its directory stayed behind
    assert left not in janitor.sweep(get_settings().data_dir)  # too young yet
    assert left in janitor.sweep(get_settings().data_dir, grace_s=0) and not left.exists()


def test_a_recycled_pid_is_not_the_owner():
    me = os.getpid()
    assert not janitor.owner_gone(janitor.owner_tag(me) + "x", janitor.socket.gethostname())
    recycled = f"{janitor.socket.gethostname()}~{me}.1~x"  # same pid, another start time
    assert janitor.owner_gone(recycled, janitor.socket.gethostname())
    assert not janitor.owner_gone(f"other-host~{me + 10**6}.1~x", janitor.socket.gethostname())
