"""What every command shares: the client from --url/--api-key, --json output, error exits."""
from __future__ import annotations

import json
from typing import Any, Iterable

import typer
from rich import box
from rich.console import Console
from rich.table import Table

from adapt.client import Client
from adapt.errors import AdaptError, APIConnectionError

EXIT_API_ERROR = 1      # the API answered with an error (its code and message on stderr)
EXIT_UNREACHABLE = 3    # the service could not be reached

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class _State:
    """One invocation's options (reset by the root callback, so in-process runs don't leak)."""

    def __init__(self) -> None:
        self.reset(None, None)

    def reset(self, url: str | None, api_key: str | None) -> None:
        self.url, self.api_key, self.json = url, api_key, False
        self.client: Client | None = None

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None


state = _State()


def _json_flag(value: bool) -> bool:
    state.json = state.json or value
    return value


JsonOption = typer.Option(False, "--json", help="Print machine-readable JSON.",
                          callback=_json_flag)


def client() -> Client:
    if state.client is None:
        state.client = Client(state.url, state.api_key)
    return state.client


def emit_json(value: Any) -> None:
    """One JSON document (or one NDJSON line) on stdout."""
    typer.echo(json.dumps(_jsonable(value), ensure_ascii=False))


def _jsonable(value: Any) -> Any:
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value




SHORT = 9  # a column this wide or narrower is not folded


def table(title: str | None, columns: Iterable[str], rows: Iterable[Iterable[Any]], *,
          ids: Iterable[str] = ("id",)) -> None:
    """A table that fits the terminal (80 columns when piped) by folding every column but the
    id: that one is never cut or wrapped, so it can be copied (other ids fold, never cut)."""
    rows = [["" if v is None else str(v) for v in row] for row in rows]
    columns, ids = list(columns), set(ids)
    t = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=0,
              show_edge=False)
    needed = len(columns) - 1  # one space between columns
    for i, c in enumerate(columns):
        width = max([len(w) for w in c.split()] + [len(row[i]) for row in rows])
        if c in ids:
            t.add_column(c, no_wrap=True, overflow="fold", min_width=width)
        else:  # short values (a status, a date) stay on one line; long ones fold
            width = min(width, SHORT)
            t.add_column(c, overflow="fold", min_width=width)
        needed += width
    for row in rows:
        t.add_row(*row)
    # Wider than the terminal rather than cut: the terminal wraps the line, the ids stay whole.
    out = console if needed <= console.width else Console(
        highlight=False, width=needed, file=console.file, color_system=console.color_system)
    out.print(t)


def fields(obj: Any, names: Iterable[str]) -> None:
    """`name  value` lines for a single object."""
    data = obj.to_dict()
    width = max(len(n) for n in names)
    for n in names:
        value = data.get(n)
        if isinstance(value, (dict, list)):
            value = json.dumps(value)
        console.print(f"{n:<{width}}  {'' if value is None else value}", soft_wrap=True)


def report_error(exc: AdaptError, as_json: bool) -> int:
    """The API's error on stderr; the exit status for it."""
    if as_json:
        typer.echo(json.dumps(exc.to_dict()), err=True)
    else:
        line = f"error: {exc.code}: {exc.message}"
        if exc.param:
            line += f" (param: {exc.param})"
        err_console.print(line, markup=False, soft_wrap=True)
        for d in exc.details[:20]:
            where = d.get("line") or d.get("member") or d.get("param") or ""
            err_console.print(f"  {where}: {d.get('message', '')}", markup=False, soft_wrap=True)
    return EXIT_UNREACHABLE if isinstance(exc, APIConnectionError) else EXIT_API_ERROR


class Group(typer.core.TyperGroup):
    """The root command: an AdaptError anywhere below exits non-zero with the API's error."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except AdaptError as exc:
            raise typer.Exit(report_error(exc, state.json)) from None
        finally:
            state.close()
