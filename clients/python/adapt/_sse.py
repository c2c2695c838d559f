"""A server-sent events parser (the WHATWG event-stream format) over lines of text."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str
    id: str | None  # None: the event carried no id (the last event id stays as it was)


def iter_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    """Dispatch an event at each blank line; comments (`: keep-alive`) are skipped."""
    event, data, event_id = "", [], None
    for raw in lines:
        line = raw.rstrip("\r\n")
        if not line:
            if data:
                yield ServerEvent(event or "message", "\n".join(data), event_id)
            event, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            event = value
        elif field == "data":
            data.append(value)
        elif field == "id" and "\0" not in value:
            event_id = value
