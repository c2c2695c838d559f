"""Lists as iterators that follow the cursor: `after` is the last id of the page before."""
from __future__ import annotations

from typing import Any, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Page(Generic[T]):
    def __init__(self, data: list[T], has_more: bool):
        self.data, self.has_more = data, has_more

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class Pager(Generic[T]):
    """Every item, newest first, fetched a page (`limit` items) at a time as iteration needs it."""

    def __init__(self, fetch: Callable[[dict[str, Any]], dict], parse: Callable[[dict], T],
                 params: dict[str, Any]):
        self._fetch, self._parse, self._params = fetch, parse, params

    def pages(self) -> Iterator[Page[T]]:
        params = dict(self._params)
        while True:
            body = self._fetch({k: v for k, v in params.items() if v is not None})
            page = Page([self._parse(item) for item in body["data"]], bool(body.get("has_more")))
            yield page
            if not page.has_more or not body["data"]:
                return
            params["after"] = body["data"][-1]["id"]

    def first_page(self) -> Page[T]:
        return next(self.pages())

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page
