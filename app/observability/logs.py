"""Structured logs: one JSON object a line (or readable text), carrying the request and job ids
that are in context when the line is written."""
import atexit
import json
import logging
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import TextIO

from app.config import get_settings

request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_id: ContextVar[str | None] = ContextVar("job_id", default=None)

# Attributes every LogRecord has; anything else on a record came from `extra=` and is logged too.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_CONTEXT = ("request_id", "job_id")
_DROPPED = {"color_message"}  # uvicorn's copy of the message with terminal colours


@contextmanager
def log_context(*, job: str | None = None) -> Iterator[None]:
    """Lines logged inside (in this thread or task) carry job_id."""
    token = job_id.set(job)
    try:
        yield
    finally:
        job_id.reset(token)


class ContextFilter(logging.Filter):
    """Copies the request and job ids in context onto the record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id.get()
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
               .replace("+00:00", "Z"), "level": record.levelname.lower(),
               "logger": record.name, "message": record.getMessage()}
        for key in _CONTEXT:
            if getattr(record, key, None) is not None:
                out[key] = getattr(record, key)
        out.update({k: v for k, v in vars(record).items() if k not in _STANDARD
                    and k not in _CONTEXT and k not in _DROPPED and k not in out
                    and not k.startswith("_")})
        if record.exc_info:
            out["exc_info"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = [f"{k}={getattr(record, k)}" for k in _CONTEXT
               if getattr(record, k, None) is not None]
        return f"{line} [{' '.join(ids)}]" if ids else line


class BackgroundHandler(logging.Handler):
    """Formats and writes on a thread of its own, every line waiting in one write: the thread
    that logs (the API's event loop, for each access line) only queues the record. Lines still
    queued are written at close (at exit)."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self._queue: queue.SimpleQueue[logging.LogRecord | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="adapt-log-writer", daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def emit(self, record: logging.LogRecord) -> None:
        self._queue.put(record)

    def _run(self) -> None:
        while True:
            records = [self._queue.get()]
            while not self._queue.empty():
                records.append(self._queue.get())
            lines = []
            for record in filter(None, records):
                try:
                    lines.append(self.format(record) + "\n")
                except Exception:  # noqa: BLE001 - logging's own rule: never raise
                    self.handleError(record)
            if lines:
                try:
                    self.stream.write("".join(lines))
                    self.stream.flush()
                except (OSError, ValueError):
                    pass  # the stream was closed (at exit): nowhere left to write
            if None in records:
                return

    def close(self) -> None:
        """Write what is queued and stop the thread."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=5)
        super().close()


def configure_logging(fmt: str | None = None, stream: TextIO | None = None,
                      background: bool = False) -> None:
    """One handler on the root logger (replacing the one an earlier call installed), INFO.
    `background`: lines are formatted and written by a thread (BackgroundHandler)."""
    if fmt is None:
        fmt = get_settings().log_format
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_adapt", False)]:
        root.removeHandler(old)
        old.close()
    handler = (BackgroundHandler(stream or sys.stderr) if background
               else logging.StreamHandler(stream or sys.stderr))
    handler._adapt = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
