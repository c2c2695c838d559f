"""The model server: one process per device owns the loaded models and batches the predict
requests of every API process (`adapt-serve --api-workers N`), so each model is loaded once per
device and requests from all API processes share forward passes, away from their event loops.

Transport: a Unix domain socket under the data dir; each frame is a 4-byte big-endian length and
a JSON object (image bytes travel base64-encoded). The API does every database and input check
first; the server fetches the checkpoint through app.storage, as the API would, on a cache miss.
A `predict` names one model (answered through its batcher); a `predict_many` names several on one
base, answered with one backbone pass (app.models_api.inference.predict_many). An `explain`
names one model and runs its integrated gradients on the server's cached model, on a thread of
its own, one request at a time (never through the batcher: predict requests keep their forward
passes while an explain runs); at most ADAPT_MODEL_SERVER_MAX_EXPLAINS wait or run. One whose
caller has hung up (the API gave up after ADAPT_EXPLAIN_TIMEOUT_S, or died) gives its place back
at once: it is not run if it still waits, and stops before its next forward/backward pass if it
runs (app.ml.explain.Passes); `stats` lists the newest explains with their passes. A base model's
models all go to one server (by a hash of the base's id), where they share its backbone; `stats`
also reports the memory of every loaded backbone and model (for the API's /metrics). The server holds at
most ADAPT_MODEL_SERVER_MAX_QUEUED inputs admitted but unanswered and refuses more (503 with
Retry-After); a server that is down, or silent for ADAPT_PREDICT_TIMEOUT_S (an explain:
ADAPT_EXPLAIN_TIMEOUT_S), is a 503 too."""
import argparse
import asyncio
import base64
import hashlib
import json
import logging
import math
import os
import socket
import struct
import sys
import tempfile
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from app.config import Settings, get_settings
from app.errors import InvalidInput, Unavailable
from app.ml import explain as ml_explain
from app.ml.vision import decode_image
from app.models_api import batching
from app.models_api.inference import ModelCache, loaded_memory, new_model_cache, predict_many
from app.observability import configure_logging
from app.predict_activity import PredictActivity
from app.storage import get_storage

log = logging.getLogger("adapt.model_server")
_LENGTH = struct.Struct(">I")
MAX_FRAME = 512 << 20
RETRY_AFTER_S = 1
GONE = {"ok": False, "error": "gone", "message": "The caller hung up."}
HANGUP_POLL_S = 0.1  # how often a held explain looks whether its caller is still there


def encode(message: dict) -> bytes:
    body = json.dumps(message, separators=(",", ":")).encode()
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ConnectionError(f"frame of {length} bytes")
    return json.loads(await reader.readexactly(length))


class _HeldExplain:
    """An explain request the server holds (waiting or running): its model, its passes (stopped
    once its caller has hung up) and gone(), whether its caller has."""

    def __init__(self, model: str | None, gone: Callable[[], bool]):
        self.model, self.gone, self.passes = model, gone, ml_explain.Passes()

    def hung_up(self) -> bool:
        """Whether the caller has hung up; the first time it is seen, the passes stop."""
        if not self.passes.stop.is_set() and self.gone():
            self.passes.stop.set()
        return self.passes.stop.is_set()


class ModelServer:
    """Answers `predict`, `explain`, `drop` and `stats` messages, one at a time per connection."""

    def __init__(self, cache: ModelCache, max_queued: int, max_pixels: int = 25_000_000,
                 max_explains: int = 8, activity: PredictActivity | None = None):
        self.cache, self.max_queued, self.max_pixels = cache, max_queued, max_pixels
        # the requests it holds, for a training worker on the same cores (YieldToPredictions)
        self.activity = activity
        self.queued = 0  # inputs admitted and not yet answered (all models)
        self.batches: OrderedDict[tuple[str, int], dict] = OrderedDict()  # the newest 256
        self.max_explains = max_explains
        self.held: set[_HeldExplain] = set()  # explain requests waiting or running
        self.explain_runs: list[dict] = []  # the newest 64: model, passes, outcome
        # One thread: an explain is a batch of forward and backward passes already, and the
        # cores it does not take are left to the predict batchers.
        self._explainer = ThreadPoolExecutor(1, thread_name_prefix="explain")
        self._explain_turn = asyncio.Lock()  # the waiting ones, in order, on the event loop

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    message = await read_frame(reader)
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                writer.write(encode(await self.answer(message, gone=reader.at_eof)))
                await writer.drain()
        except ConnectionError:
            pass  # the caller gave up (its timeout): nobody is left to answer
        finally:
            writer.close()

    async def answer(self, message: dict, gone: Callable[[], bool] = lambda: False) -> dict:
        """The reply to one message; gone() says whether its caller has hung up already."""
        op = message.get("op")
        if op in ("predict", "predict_many", "explain"):
            if self.activity:
                self.activity.begin()
            try:
                return await (self.explain(message, gone) if op == "explain"
                              else self.predict(message))
            finally:
                if self.activity:
                    self.activity.end()
        if op == "drop":
            for model_id in message.get("models", []):
                self.cache.drop(model_id)
            return {"ok": True}
        if op == "stats":
            return {"ok": True, "pid": os.getpid(), "models": self.cache.keys(),
                    "queued": self.queued, "explains": self.explains,
                    "explain_runs": self.explain_runs, "batches": list(self.batches.values()),
                    "memory": loaded_memory(self.cache)}
        return {"ok": False, "error": "bad_request", "message": f"unknown op {op!r}"}

    async def predict(self, message: dict) -> dict:
        models, inputs = message["models"], message["inputs"]
        size = len(inputs) * len(models)
        if self.queued and self.queued + size > self.max_queued:
            return {"ok": False, "error": "overloaded", "retry_after": RETRY_AFTER_S,
                    "message": f"The model server holds {self.queued} inputs waiting for a "
                               f"forward pass (at most {self.max_queued}); retry shortly."}
        self.queued += size
        try:
            loop = asyncio.get_running_loop()
            if message.get("kind") == "image":
                inputs = await loop.run_in_executor(None, self._decode, inputs)
            if message["op"] == "predict_many":
                refs = [(m["id"], _fetcher(m["storage_key"])) for m in models]
                results = await loop.run_in_executor(None, lambda: predict_many(
                    refs, inputs, message.get("top_k"), message.get("min_confidence"),
                    cache=self.cache))
                return {"ok": True, "results": results}
            results = await asyncio.gather(*(self._one(m, inputs, message.get("top_k"),
                                                       message.get("caller")) for m in models))
            return {"ok": True, "results": results}
        except Exception as exc:  # noqa: BLE001 — a reply either way (_failure)
            return _failure(exc, "predict")
        finally:
            self.queued -= size

    @property
    def explains(self) -> int:
        """Explain requests waiting or running for a caller that is still there."""
        return len(self.held)

    async def explain(self, message: dict, gone: Callable[[], bool]) -> dict:
        """One explain request, on the explain thread once the ones before it are done."""
        self.held -= {h for h in self.held if h.hung_up()}  # their places are free now
        if self.explains >= self.max_explains:
            return {"ok": False, "error": "overloaded", "retry_after": RETRY_AFTER_S,
                    "message": f"The model server holds {self.explains} explain requests "
                               f"(at most {self.max_explains}, ADAPT_MODEL_SERVER_MAX_EXPLAINS); "
                               "retry shortly."}
        held = _HeldExplain((message.get("model") or {}).get("id"), gone)
        self.held.add(held)
        watch = asyncio.create_task(self._let_go_on_hangup(held))
        outcome = "skipped"
        try:
            async with self._explain_turn:
                if held.hung_up():  # its caller timed out while it waited
                    return GONE
                loop = asyncio.get_running_loop()
                outcome = "failed"
                answer = await loop.run_in_executor(self._explainer, self._explain, message,
                                                    held.passes)
                outcome = "answered"
                return {"ok": True, **answer}
        except ml_explain.Abandoned:
            outcome = "abandoned"
            log.info("explain of %s stopped after %d passes: its caller hung up", held.model,
                     held.passes.done)
            return GONE
        except Exception as exc:  # noqa: BLE001 — a reply either way (_failure)
            return _failure(exc, "explain")
        finally:
            watch.cancel()
            self.held.discard(held)
            self.explain_runs = [*self.explain_runs[-63:], {
                "model": held.model, "passes": held.passes.done, "outcome": outcome}]

    async def _let_go_on_hangup(self, held: _HeldExplain) -> None:
        """Once the caller has hung up: the explain stops at its next pass, its place is free."""
        while not held.hung_up():
            await asyncio.sleep(HANGUP_POLL_S)
        self.held.discard(held)

    def _explain(self, message: dict, passes: ml_explain.Passes) -> dict:
        inputs = message["inputs"]
        if message.get("kind") == "image":
            inputs = self._decode(inputs)
        model = message["model"]
        predictor = self.cache.peek(model["id"])
        hit = predictor is not None
        if predictor is None:
            predictor = self.cache.get(model["id"], _fetcher(model["storage_key"]))
        return {**explained(predictor, inputs, message.get("target"), message["steps"],
                            message.get("top_k"), passes), "hit": hit}

    def _decode(self, encoded: list[str]) -> list:
        out = []
        for i, item in enumerate(encoded):
            try:
                out.append(decode_image(base64.b64decode(item), self.max_pixels))
            except ValueError as exc:
                raise InvalidInput(f"Input {i}: {exc}.", param=f"inputs.{i}") from None
        return out

    async def _one(self, model: dict, inputs: list, top_k: int | None,
                   caller: str | None) -> dict:
        loop = asyncio.get_running_loop()
        with batching.incoming() as arrival:
            predictor = self.cache.peek(model["id"])  # loaded: no hop to the thread pool
            hit = predictor is not None
            if predictor is None:
                predictor = await loop.run_in_executor(None, self.cache.get, model["id"],
                                                       _fetcher(model["storage_key"]))
            future = predictor.batcher.submit(inputs, top_k or min(len(predictor.labels), 5),
                                              arrival, caller)
        predictions = await asyncio.wrap_future(future)
        batch = {"model": model["id"], **future.batch}
        self.batches[(model["id"], batch["seq"])] = batch
        while len(self.batches) > 256:
            self.batches.popitem(last=False)
        return {"id": model["id"], "predictions": predictions, "hit": hit, "batch": batch,
                "thresholds": predictor.thresholds}


def explained(predictor, inputs: list, target: str | None, steps: int,
              top_k: int | None, passes: ml_explain.Passes | None = None) -> dict:
    """What an explain answers, wherever it runs (a model server, or the API process without
    one): the method, the model's label thresholds, and each input's prediction with its
    attributions toward `target` (None: its predicted label). `passes`: see Passes."""
    index = None if target is None else predictor.labels.index(target)
    found = predictor.explain(inputs, [index] * len(inputs), steps,
                              top_k or min(len(predictor.labels), 5), passes)
    return {"method": predictor.method, "thresholds": predictor.thresholds,
            "explanations": found}


def _failure(exc: Exception, what: str) -> dict:
    """The reply for a request that raised: a bad input is the API's 422; anything else a 503,
    its cause in this server's log."""
    if isinstance(exc, InvalidInput):
        return {"ok": False, "error": "invalid_input", "message": exc.message, "param": exc.param}
    log.error("%s failed", what, exc_info=exc)
    return {"ok": False, "error": "failed", "retry_after": RETRY_AFTER_S,
            "message": f"The model server could not {what}: {exc}"}


def _fetcher(storage_key: str):
    """The checkpoint's local directory, fetched only when the cache misses."""
    return lambda: get_storage().fetch(storage_key)


async def serve(path: Path, server: ModelServer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a socket file left by a server that was killed
    async with await asyncio.start_unix_server(server.handle, path=str(path)) as unix:
        log.info("model server %d listening on %s", os.getpid(), path)
        await unix.serve_forever()


# --- the API's side --------------------------------------------------------------------------

def addresses(settings: Settings) -> list[str]:
    return [a.strip() for a in settings.model_server.split(",") if a.strip()]


def address_for(settings: Settings, key: str) -> str:
    """The server a key's requests go to (a model's base model: its models share a backbone
    there): always the same one, so each is loaded once."""
    found = addresses(settings)
    return found[zlib.crc32(key.encode()) % len(found)]


def _route(model: dict) -> str:
    return model.get("base_model") or model["id"]


async def call(address: str, message: dict, timeout_s: float,
               timeout_setting: str = "ADAPT_PREDICT_TIMEOUT_S") -> dict:
    """One exchange on a fresh connection; a server that is down, dies mid-request or is silent
    past timeout_s raises Unavailable (503, Retry-After)."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(address)
            try:
                writer.write(encode(message))
                await writer.drain()
                return await read_frame(reader)
            finally:
                writer.close()
    except TimeoutError:
        raise _unavailable(f"The model server did not answer within {timeout_s:g} s "
                           f"({timeout_setting}); retry shortly.") from None
    except (OSError, asyncio.IncompleteReadError, ValueError):
        wait = restart_wait(address)
        raise _unavailable("The model server is unavailable (restarting"
                           + (f", next start in {wait} s" if wait > RETRY_AFTER_S else "")
                           + "); retry shortly.", retry_after=wait) from None


def down_file(address: str | Path) -> Path:
    """Where the keeper of the server on `address` (app.worker_pool.Kept) writes when it will
    start it again, while it waits."""
    return Path(f"{address}.down")


def restart_wait(address: str | Path) -> int:
    """Seconds until the server on `address` is started again (its keeper backs off while it
    keeps crashing), rounded up; RETRY_AFTER_S when no start is pending."""
    try:
        due = json.loads(down_file(address).read_text())["restart_at"] - time.time()
    except (OSError, ValueError, KeyError, TypeError):
        return RETRY_AFTER_S
    return max(RETRY_AFTER_S, math.ceil(due))


def _unavailable(message: str, code: str = "model_server_unavailable",
                 retry_after: int = RETRY_AFTER_S) -> Unavailable:
    return Unavailable(message, code=code, headers={"Retry-After": str(retry_after)})


async def predict(settings: Settings, models: list[dict], inputs: list, top_k: int | None,
                  caller: str | None = None) -> list[dict]:
    """Per model ({id, storage_key}): its predictions, label thresholds, whether it was loaded
    already and the batch it ran in. Images go as their raw bytes."""
    message = {"op": "predict", "models": models, "top_k": top_k,
               "caller": caller or str(os.getpid()), **_wire(inputs)}
    return _results(await call(address_for(settings, _route(models[0])), message,
                               settings.predict_timeout_s))


def _wire(inputs: list) -> dict:
    """The inputs as a message carries them: texts, or images as their raw bytes in base64 (the
    server decodes them)."""
    image = bool(inputs) and isinstance(inputs[0], bytes)
    return {"kind": "image" if image else "text",
            "inputs": [base64.b64encode(x).decode() for x in inputs] if image else inputs}


async def explain(settings: Settings, model: dict, inputs: list, target: str | None, steps: int,
                  top_k: int | None) -> dict:
    """An explanation computed by the model's server ({id, storage_key, base_model}), as
    explained() answers it (and whether the model was loaded already: `hit`). Images go as their
    raw bytes; their heatmaps come back as the PNGs the API returns."""
    message = {"op": "explain", "model": model, "target": target, "steps": steps,
               "top_k": top_k, **_wire(inputs)}
    return _answer(await call(address_for(settings, _route(model)), message,
                              settings.explain_timeout_s, "ADAPT_EXPLAIN_TIMEOUT_S"))


async def predict_many_remote(settings: Settings, models: list[dict], inputs: list,
                              top_k: int | None, min_confidence: float | None) -> list[list[dict]]:
    """A fan-out (models on one base: texts, or image bytes) answered by the base's server in
    one backbone pass."""
    message = {"op": "predict_many", "models": models, "top_k": top_k,
               "min_confidence": min_confidence, **_wire(inputs)}
    return _results(await call(address_for(settings, _route(models[0])), message,
                               settings.predict_timeout_s))


def _results(reply: dict) -> list:
    return _answer(reply)["results"]


def _answer(reply: dict) -> dict:
    """A reply that is ok, else its refusal raised as the API answers it (422 or 503)."""
    if reply.get("ok"):
        return reply
    if reply.get("error") == "invalid_input":
        raise InvalidInput(reply["message"], param=reply.get("param"))
    code = "model_server_busy" if reply.get("error") == "overloaded" else "model_server_error"
    raise _unavailable(reply.get("message", "The model server failed."), code)


def request_sync(address: str, message: dict, timeout_s: float = 5.0) -> dict:
    """One exchange from synchronous code (model delete); OSError when the server is down."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        sock.connect(address)
        sock.sendall(encode(message))
        head = _recv(sock, _LENGTH.size)
        return json.loads(_recv(sock, _LENGTH.unpack(head)[0]))


def _recv(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("the model server closed the connection")
        buf += chunk
    return bytes(buf)


def loaded_memory_remote(settings: Settings) -> tuple[list, list]:
    """(backbones, models) with their bytes, over every model server that answers now."""
    backbones, models = [], []
    for address in addresses(settings):
        try:
            found = request_sync(address, {"op": "stats"}, timeout_s=2.0).get("memory")
        except OSError:
            continue  # down or restarting: it holds nothing until it is back
        if found:
            backbones += [tuple(item) for item in found[0]]
            models += [tuple(item) for item in found[1]]
    return backbones, models


def drop(settings: Settings, model_id: str) -> None:
    """Unload the model on every server (a server that is down holds nothing anyway)."""
    for address in addresses(settings):
        try:
            request_sync(address, {"op": "drop", "models": [model_id]})
        except OSError as exc:
            log.warning("model server %s: could not drop %s: %s", address, model_id, exc)


# --- the process -----------------------------------------------------------------------------

def plan(data_dir: Path, gpus: list[str], worker_device: str) -> list[tuple[Path, dict]]:
    """(socket path, environment) of each model server to run: one per visible GPU, each pinned
    with CUDA_VISIBLE_DEVICES; one on the CPU when there is none (or worker_device is cpu)."""
    run = Path(data_dir).resolve() / "run"
    if worker_device == "cpu" or not gpus:
        return [(_socket_path(run, "model-server-cpu.sock"), {"ADAPT_WORKER_DEVICE": "cpu"})]
    return [(_socket_path(run, f"model-server-gpu{g}.sock"),
             {"CUDA_VISIBLE_DEVICES": g, "ADAPT_WORKER_DEVICE": "cuda"}) for g in gpus]


def _socket_path(run: Path, name: str) -> Path:
    """run/name, or a name in the temp dir unique to `run` when that path is longer than a Unix
    socket's address may be (108 bytes on Linux)."""
    path = run / name
    if len(str(path).encode()) < 100:
        return path
    return Path(tempfile.gettempdir()) / f"adapt-{hashlib.sha1(bytes(run)).hexdigest()[:12]}-{name}"


def activity_file(path: str | Path) -> Path:
    """Where the model server at socket `path` shows the requests it holds (app.predict_activity)."""
    return Path(path).with_suffix(".activity")


def command(path: Path) -> list[str]:
    return [sys.executable, "-m", "app.models_api.model_server", "--socket", str(path)]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="adapt-model-server", description=__doc__)
    parser.add_argument("--socket", required=True, type=Path)
    args = parser.parse_args(argv)
    configure_logging()
    settings = get_settings()
    server = ModelServer(new_model_cache(), settings.model_server_max_queued,
                         settings.max_image_pixels, settings.model_server_max_explains,
                         PredictActivity(activity_file(args.socket), owner=True))
    asyncio.run(serve(args.socket, server))


if __name__ == "__main__":
    main()
