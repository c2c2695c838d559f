"""A server-sent events parser (the WHATWG event-stream format) over lines of text: `SSEDecoder`
is fed a line at a time (by a sync or an async reader); `iter_sse` runs it over an iterable."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator


@dataclass(frozen=True)
class ServerEvent:
    event: str
    data: str
    id: str | None  # None: the event carried no id (the last event id stays as it was)


class SSEDecoder:
    """Dispatch an event at each blank line; comments (`: keep-alive`) are skipped."""

    def __init__(self) -> None:
        self.event, self.data, self.event_id = "", [], None

    def feed(self, raw: str) -> ServerEvent | None:
        line = raw.rstrip("\r\n")
        if not line:
            out = ServerEvent(self.event or "message", "\n".join(self.data), self.event_id) \
                if self.data else None
            self.event, self.data, self.event_id = "", [], None
            return out
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "event":
            self.event = value
        elif field == "data":
            self.data.append(value)
        elif field == "id" and "\0" not in value:
            self.event_id = value
        return None


def iter_sse(lines: Iterable[str]) -> Iterator[ServerEvent]:
    decoder = SSEDecoder()
    for raw in lines:
        if (message := decoder.feed(raw)) is not None:
            yield message
