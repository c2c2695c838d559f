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
    table(None, ("id", "task", "source", "parameters", "license", "description"),
          ((m.id, m.task, m.source, f"{m.parameters / 1e6:.1f}M" if m.parameters else "",
            m.license, m.description) for m in rows))
