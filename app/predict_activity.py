"""Whether predictions are being answered on this machine right now, read by a training worker
that shares its CPU cores with the model server (adapt-serve's embedded default).

The model server counts the requests it holds and stamps the time of its latest one in a
16-byte file mapped into memory (no system call per request beyond the page write); a worker
maps the same file and reads it between training steps (workers.callbacks.YieldToPredictions).
Timestamps are CLOCK_MONOTONIC, which every process on the machine shares."""
import mmap
import os
import struct
import time
from pathlib import Path

_LAYOUT = struct.Struct("<qd")  # requests held, monotonic time of the latest begin or end
# A count left by a model server killed mid-request is not believed past this: the restarted
# server zeroes the file, but a worker must not wait on a dead one meanwhile.
STALE_S = 30.0


class PredictActivity:
    def __init__(self, path: str | Path, *, owner: bool = False):
        """Map `path`; the owner (the model server) creates or zeroes it."""
        path = Path(path)
        if owner:
            path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT if owner else os.O_RDONLY, 0o644)
        try:
            # never truncated: a worker's map of a shorter file would fault (SIGBUS) on a read
            if owner and os.fstat(fd).st_size < _LAYOUT.size:
                os.ftruncate(fd, _LAYOUT.size)
            self._map = mmap.mmap(fd, _LAYOUT.size,
                                  access=mmap.ACCESS_WRITE if owner else mmap.ACCESS_READ)
        finally:
            os.close(fd)
        self._held = 0
        if owner:  # a server restarted after a kill: the requests it held are gone
            _LAYOUT.pack_into(self._map, 0, 0, 0.0)

    @classmethod
    def reader(cls, path: str | Path | None) -> "PredictActivity | None":
        """The activity at `path` for a worker, or None where no model server writes one yet."""
        try:
            return cls(path) if path else None
        except (OSError, ValueError):  # missing, or shorter than the layout: nothing to read
            return None

    def begin(self, n: int = 1) -> None:
        self._held += n
        _LAYOUT.pack_into(self._map, 0, self._held, time.monotonic())

    def end(self, n: int = 1) -> None:
        self._held -= n
        _LAYOUT.pack_into(self._map, 0, self._held, time.monotonic())

    def read(self) -> tuple[int, float]:
        """(requests held, seconds since the latest one began or ended)."""
        held, at = _LAYOUT.unpack_from(self._map, 0)
        return held, time.monotonic() - at

    def busy(self, grace_s: float) -> bool:
        """Requests are held, or one ended less than grace_s ago (the next of a steady stream is
        on its way)."""
        held, ago = self.read()
        return (held > 0 and ago < STALE_S) or ago < grace_s
