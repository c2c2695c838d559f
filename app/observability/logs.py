"""Structured logs: one JSON object a line (or readable text), carrying the request and job ids
that are in context when the line is written."""
import json
import logging
import sys
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


def configure_logging(fmt: str | None = None, stream: TextIO | None = None) -> None:
    """One handler on the root logger (replacing the one an earlier call installed), INFO."""
    if fmt is None:
        fmt = get_settings().log_format
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_adapt", False)]:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler._adapt = True  # type: ignore[attr-defined]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root.addHandler(handler)
    root.setLevel(logging.INFO)
