"""Micro-batching for predict: requests for one model that arrive together share one forward pass.

One thread per loaded model takes requests off its queue. It runs a batch at once when no other
predict request is on its way (an idle server adds no wait); under load it waits up to max_wait
for the requests already being parsed to join, and flushes as soon as max_batch inputs are in.
The forward pass runs on that thread, never on the event loop."""
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

_incoming = 0  # predict requests admitted but not yet queued at a batcher (any model)
_incoming_lock = threading.Lock()


class Arrival:
    """A predict request counted as on its way to a batcher, from the moment the endpoint takes it
    until it is queued (submit() hands the count over) or fails before that."""

    def __init__(self):
        self.pending = False

    def done(self) -> None:
        global _incoming
        with _incoming_lock:
            if self.pending:
                self.pending = False
                _incoming -= 1


@contextlib.contextmanager
def incoming():
    global _incoming
    arrival = Arrival()
    with _incoming_lock:
        _incoming += 1
        arrival.pending = True
    try:
        yield arrival
    finally:
        arrival.done()


def requests_on_their_way() -> int:
    return _incoming


@dataclass
class _Request:
    inputs: list
    top_k: int
    caller: str | None = None
    future: Future = field(default_factory=Future)


class Batcher:
    """Runs run_batch(inputs, top_ks) -> list of per-input results over gathered requests."""

    def __init__(self, run_batch: Callable[[list, list[int]], list], max_batch: int = 64,
                 max_wait_s: float = 0.002, name: str = "batcher"):
        self.run_batch, self.max_batch, self.max_wait_s = run_batch, max_batch, max_wait_s
        self._queue: deque[_Request] = deque()
        self._cv = threading.Condition()
        self._closed = False
        self.batches = 0   # forward passes run
        self.requests = 0  # requests answered
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, inputs: list, top_k: int, arrival: Arrival | None = None,
               caller: str | None = None) -> Future:
        """The future of the request's results; once done, its `batch` says what the batch it
        ran in held (requests, inputs, the distinct callers that named themselves)."""
        req = _Request(list(inputs), top_k, caller)
        with self._cv:
            if self._closed:
                raise RuntimeError("batcher is closed")
            self._queue.append(req)
            if arrival is not None:
                arrival.done()  # before the batcher wakes: it counts only those still coming
            self._cv.notify()
        return req.future

    def close(self) -> None:
        """Finish what is queued, then stop the thread."""
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _take(self) -> list[_Request] | None:
        """The next batch: whole requests, in arrival order, up to max_batch inputs (a request
        larger than that runs alone)."""
        with self._cv:
            while not self._queue:
                if self._closed:
                    return None
                self._cv.wait()
            deadline = time.monotonic() + self.max_wait_s
            while (self._size() < self.max_batch and requests_on_their_way() > 0
                   and (left := deadline - time.monotonic()) > 0):
                self._cv.wait(left)
            batch, size = [], 0
            while self._queue and (not batch or size + len(self._queue[0].inputs) <= self.max_batch):
                req = self._queue.popleft()
                batch.append(req)
                size += len(req.inputs)
            return batch

    def _size(self) -> int:
        return sum(len(r.inputs) for r in self._queue)

    def _loop(self) -> None:
        while (batch := self._take()) is not None:
            batch = [r for r in batch if r.future.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                inputs = [x for r in batch for x in r.inputs]
                top_ks = [r.top_k for r in batch for _ in r.inputs]
                results = self.run_batch(inputs, top_ks)
            except BaseException as exc:  # noqa: BLE001 — handed to every waiting request
                for r in batch:
                    r.future.set_exception(exc)
                continue
            self.batches += 1
            self.requests += len(batch)
            info = {"seq": self.batches, "requests": len(batch), "inputs": len(inputs),
                    "callers": sorted({r.caller for r in batch if r.caller is not None})}
            at = 0
            for r in batch:
                r.future.batch = info
                r.future.set_result(results[at: at + len(r.inputs)])
                at += len(r.inputs)
