"""`adapt base-models list`."""
from __future__ import annotations

import typer

from adapt.cli._common import JsonOption, client, emit_json, table

app = typer.Typer(no_args_is_help=True, help="Base models: the catalog jobs start from.")


@app.command("list")
def list_(as_json: bool = JsonOption) -> None:
    """The catalog: bundled, local and uploaded base models."""
    rows = client().base_models.list()
    if as_json:
        return emit_json(rows)
    table(None, ("id", "task", "source", "parameters", "description"),
          ((m.id, m.task, m.source, f"{m.parameters / 1e6:.1f}M" if m.parameters else "",
            _short(m.description)) for m in rows))


def _short(text: str, width: int = 40) -> str:
    """The description's first clause, at most `width` characters (`show` has it whole)."""
    text = text.split(";")[0].split(". ")[0]
    return text if len(text) <= width else text[:width - 1] + "…"
