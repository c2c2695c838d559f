"""Leftovers of processes that died: an API SIGKILLed while staging an upload leaves its partial
files in the staging dir; a worker SIGKILLed mid-job leaves its work directory (a partial
checkpoint among it); refused and deleted datasets leave empty directories.

Staging and work directories carry their owner in their name, `<host>~<pid>.<start>~…` (`start`:
the process's start time in clock ticks since boot, so a recycled pid is not taken for the owner).
sweep() removes those whose owner is not alive on this host and that are older than a grace
period, and empty dataset directories past the same grace period. Directories of other hosts (a
data dir shared over the network) are left to their own host. It runs at API start-up, at worker
start-up and on every maintenance pass (workers/maintenance.py). Standard library only: every
layer may call it."""
import logging
import os
import shutil
import socket
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)
SEP = "~"
GRACE_S = 60.0  # never touch anything younger: it may be being created right now


def _start_ticks(pid: int) -> str:
    """The process's start time (clock ticks since boot) from /proc; "" where there is none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def owner_tag(pid: int | None = None) -> str:
    """The name prefix that says which process owns a directory: `<host>~<pid>.<start>~`."""
    pid = os.getpid() if pid is None else pid
    return f"{socket.gethostname()}{SEP}{pid}.{_start_ticks(pid)}{SEP}"


def owned_dir(parent: Path, label: str = "") -> Path:
    """A new directory under parent, named for this process (and `label`, e.g. a job id)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=parent, prefix=f"{owner_tag()}{label}"))


def _alive(pid: int, start: str) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        pass
    now = _start_ticks(pid)
    return not (start and now and now != start)  # the pid was recycled by another process


def owner_gone(name: str, host: str) -> bool:
    """True when the name carries an owner of this host that is no longer alive."""
    parts = name.split(SEP)
    if len(parts) < 3 or parts[0] != host:
        return False
    pid, _, start = parts[1].partition(".")
    return pid.isdigit() and not _alive(int(pid), start)


def _old(path: Path, grace_s: float, now: float) -> bool:
    try:
        return now - path.lstat().st_mtime >= grace_s
    except FileNotFoundError:
        return False


def sweep(data_dir: Path, grace_s: float = GRACE_S) -> list[Path]:
    """One pass over the data dir; returns what it removed."""
    data_dir, host, now, removed = Path(data_dir), socket.gethostname(), time.time(), []
    for parent in (data_dir / "blobs" / "tmp", data_dir / "work"):
        for entry in _entries(parent):
            if owner_gone(entry.name, host) and _old(entry, grace_s, now):
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink(missing_ok=True)
                removed.append(entry)
    for tenant in _entries(data_dir / "blobs" / "datasets"):
        for entry in _entries(tenant):
            if entry.is_dir() and _old(entry, grace_s, now):
                try:
                    entry.rmdir()  # only when empty
                except OSError:
                    continue
                removed.append(entry)
    if removed:
        log.info("janitor: removed %d leftover(s) of dead processes and deleted datasets",
                 len(removed), extra={"removed": [str(p) for p in removed][:20]})
    return removed


def _entries(parent: Path) -> list[Path]:
    try:
        return list(parent.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
