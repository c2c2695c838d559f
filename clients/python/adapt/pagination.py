"""Lists as iterators that follow the cursor: `after` is the last id of the page before.
`Pager` for the sync client, `AsyncPager` (async for) for the async one."""
from __future__ import annotations

from typing import Any, AsyncIterator, Awaitable, Callable, Generic, Iterator, TypeVar

T = TypeVar("T")


class Page(Generic[T]):
    def __init__(self, data: list[T], has_more: bool):
        self.data, self.has_more = data, has_more

    def __iter__(self) -> Iterator[T]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class _Cursor(Generic[T]):
    def __init__(self, fetch: Callable[[dict[str, Any]], Any], parse: Callable[[dict], T],
                 params: dict[str, Any]):
        self._fetch, self._parse, self._params = fetch, parse, params

    def _page(self, body: dict, params: dict[str, Any]) -> tuple[Page[T], bool]:
        """The page in `body`, and whether there is one after it (then `params` point at it)."""
        page = Page([self._parse(item) for item in body["data"]], bool(body.get("has_more")))
        if not page.has_more or not body["data"]:
            return page, False
        params["after"] = body["data"][-1]["id"]
        return page, True

    @staticmethod
    def _given(params: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in params.items() if v is not None}


class Pager(_Cursor[T]):
    """Every item, newest first, fetched a page (`limit` items) at a time as iteration needs it."""

    _fetch: Callable[[dict[str, Any]], dict]

    def pages(self) -> Iterator[Page[T]]:
        params, more = dict(self._params), True
        while more:
            page, more = self._page(self._fetch(self._given(params)), params)
            yield page

    def first_page(self) -> Page[T]:
        return next(self.pages())

    def __iter__(self) -> Iterator[T]:
        for page in self.pages():
            yield from page


class AsyncPager(_Cursor[T]):
    """`async for item in client.jobs.list()`: the same, a page at a time."""

    _fetch: Callable[[dict[str, Any]], Awaitable[dict]]

    async def pages(self) -> AsyncIterator[Page[T]]:
        params, more = dict(self._params), True
        while more:
            page, more = self._page(await self._fetch(self._given(params)), params)
            yield page

    async def first_page(self) -> Page[T]:
        async for page in self.pages():
            return page
        raise StopAsyncIteration

    async def __aiter__(self) -> AsyncIterator[T]:
        async for page in self.pages():
            for item in page:
                yield item
