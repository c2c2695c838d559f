"""The model server's transport cost: one predict request answered by a batcher in this process
vs the same request sent to a model server over its Unix socket (a fresh connection per request,
length-prefixed JSON frames, as the API sends it), with an instant "model" so that only the
transport and the server's bookkeeping are timed.

    .venv/bin/python benchmarks/model_server.py [--requests 2000] [--inputs 8]

Sequential requests (one in flight), in one process: the server runs on a thread's event loop.
Prints the median and p99 per request of each, and the difference: the overhead per request.
"""
import argparse
import asyncio
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.config import get_settings  # noqa: E402
from app.models_api import model_server  # noqa: E402
from app.models_api.batching import Batcher  # noqa: E402
from app.models_api.inference import ModelCache  # noqa: E402


def _instant(inputs: list, top_ks: list[int]) -> list[dict]:
    return [{"label": "a", "score": 0.9, "top": [{"label": "a", "score": 0.9},
                                                 {"label": "b", "score": 0.1}][:k]}
            for _, k in zip(inputs, top_ks, strict=True)]


class _Instant:
    labels, thresholds = ["a", "b"], {"a": 0.5, "b": 0.5}

    def __init__(self):
        self.batcher = Batcher(_instant, max_wait_s=0)

    def nbytes(self) -> int:
        return 0

    def close(self) -> None:
        self.batcher.close()


def _times(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--inputs", type=int, default=8)
    args = parser.parse_args()
    texts = [f"a short review number {i}, neither good nor bad" for i in range(args.inputs)]

    local = _Instant()
    in_process = _times(lambda: local.batcher.submit(texts, 2).result(), args.requests)

    path = Path(tempfile.mkdtemp()) / "bench.sock"
    server = model_server.ModelServer(ModelCache(2, load=lambda _: _Instant()), 10_000)
    loop = asyncio.new_event_loop()
    loop.create_task(model_server.serve(path, server))
    threading.Thread(target=loop.run_forever, daemon=True).start()
    while not path.exists():
        time.sleep(0.01)
    settings = get_settings().model_copy(update={"model_server": str(path)})
    models = [{"id": "mdl_bench", "storage_key": "-"}]
    client = asyncio.new_event_loop()  # the API's side: its own event loop, as uvicorn's
    remote = _times(lambda: client.run_until_complete(
        model_server.predict(settings, models, texts, 2)), args.requests)

    def line(name: str, xs: list[float]) -> str:
        xs = sorted(xs)
        return (f"{name:<28} median {statistics.median(xs) * 1e6:8.0f} µs   "
                f"p99 {xs[int(len(xs) * 0.99)] * 1e6:8.0f} µs")

    print(f"{args.requests} sequential requests of {args.inputs} texts, instant model")
    print(line("in-process batcher", in_process))
    print(line("model server (UDS, JSON)", remote))
    print(f"overhead per request: {(statistics.median(remote) - statistics.median(in_process)) * 1e6:.0f} µs "
          f"(median), ratio {statistics.median(remote) / statistics.median(in_process):.1f}×")


if __name__ == "__main__":
    main()
