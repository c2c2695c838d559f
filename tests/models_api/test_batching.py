"""Micro-batching: requests that arrive together share a forward pass and each gets its own
answers; a lone request never waits; failures reach every request of the batch."""
import threading

import pytest

from app.models_api import batching
from app.models_api.batching import Batcher
from app.models_api.inference import ModelCache


def _doubler(calls):
    def run(inputs, top_ks):
        calls.append(list(inputs))
        return [(x * 2, k) for x, k in zip(inputs, top_ks, strict=True)]
    return run


def test_concurrent_requests_share_batches_and_each_gets_its_own_results():
    calls = []
    batcher = Batcher(_doubler(calls), max_batch=64, max_wait_s=5.0)
    n, results, start = 24, {}, threading.Barrier(24)

    def client(i):
        with batching.incoming() as arrival:
            start.wait()  # all 24 are "on their way" before any is queued
            future = batcher.submit([i, i + 100], top_k=i % 3 + 1, arrival=arrival)
        results[i] = future.result(timeout=10)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {i: [(2 * i, i % 3 + 1), (2 * (i + 100), i % 3 + 1)] for i in range(n)}
    assert batcher.requests == n
    assert batcher.batches < n // 4, calls  # gathered, not one pass per request
    assert all(len(c) <= 64 for c in calls)
    batcher.close()


def test_a_lone_request_runs_at_once_even_with_a_long_max_wait():
    batcher = Batcher(_doubler([]), max_batch=64, max_wait_s=3600)
    with batching.incoming() as arrival:
        future = batcher.submit([21], top_k=1, arrival=arrival)
    assert future.result(timeout=10) == [(42, 1)]  # would hang for an hour if it waited
    batcher.close()


def test_a_request_larger_than_max_batch_runs_whole_and_alone():
    calls = []
    batcher = Batcher(_doubler(calls), max_batch=4, max_wait_s=0)
    assert [x for x, _ in batcher.submit(list(range(10)), 1).result(timeout=10)] == \
        [2 * i for i in range(10)]
    assert calls == [list(range(10))]
    batcher.close()


def test_a_failing_forward_pass_fails_every_request_of_its_batch_and_the_next_works():
    def run(inputs, top_ks):
        if "boom" in inputs:
            raise RuntimeError("out of memory")
        return inputs

    batcher = Batcher(run, max_batch=64, max_wait_s=0)
    with pytest.raises(RuntimeError, match="out of memory"):
        batcher.submit(["boom"], 1).result(timeout=10)
    assert batcher.submit(["fine"], 1).result(timeout=10) == ["fine"]
    batcher.close()


class _Fake:
    def __init__(self, nbytes):
        self._nbytes, self.closed = nbytes, False

    def nbytes(self):
        return self._nbytes

    def close(self):
        self.closed = True


def test_model_cache_loads_once_under_concurrent_first_requests():
    loads, gate = [], threading.Event()

    def load(path):
        gate.wait(5)
        loads.append(path)
        return _Fake(10)

    cache = ModelCache(size=4, load=load)
    got = []
    threads = [threading.Thread(target=lambda: got.append(cache.get("m", "p"))) for _ in range(8)]
    for t in threads:
        t.start()
    gate.set()
    for t in threads:
        t.join()
    assert loads == ["p"] and len({id(x) for x in got}) == 1


def test_model_cache_is_bounded_by_bytes_and_closes_what_it_evicts():
    lookups = []
    cache = ModelCache(size=10, max_bytes=250, load=lambda p: _Fake(100),
                       on_lookup=lookups.append)
    a, b = cache.get("a", "a"), cache.get("b", "b")
    cache.get("a", "a")          # a is now the most recently used
    c = cache.get("c", "c")      # 300 bytes > 250: b goes
    assert len(cache) == 2 and b.closed and not a.closed and not c.closed
    assert cache.get("a", "a") is a
    assert lookups == [False, False, True, False, True]
    big = ModelCache(size=10, max_bytes=50, load=lambda p: _Fake(100))
    assert big.get("x", "x").nbytes() == 100 and len(big) == 1  # the newest always stays
