"""`adapt base-models list`."""
from __future__ import annotations

from typing import Optional

import typer

from adapt.cli._common import JsonOption, client, console, emit_json, table

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


RANK_COLUMNS = ("rank", "base model", "LogME", "k-NN acc", "dim", "cached", "seconds")


def _ranking(sel) -> None:
    table(None, RANK_COLUMNS, ((r.rank, r.base_model, f"{r.logme:.4f}", f"{r.knn_accuracy:.3f}",
                                r.feature_dim, f"{r.features_cached}/{r.examples}",
                                f"{r.seconds.get('total', 0):.2f}") for r in sel.results or []))
    if sel.error:
        console.print(f"[red]{sel.error.get('message')}[/red]")
    elif not sel.finished:
        console.print(f"{sel.id} is {sel.status}: `adapt base-models ranking {sel.id}` shows it")


@app.command()
def rank(dataset_id: str = typer.Argument(..., help="The dataset (ds_…) to rank base models for."),
         candidates: Optional[str] = typer.Option(
             None, "--candidates", help="Comma-separated base model ids (default: all of the "
                                        "dataset's task)."),
         max_examples: Optional[int] = typer.Option(None, "--max-examples", min=10),
         wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait for the ranking."),
         as_json: bool = JsonOption) -> None:
    """Rank base models for a dataset before training (LogME and a k-NN probe on each one's
    frozen features); a `head` job on the winner then starts from cached features."""
    c = client()
    chosen = [x.strip() for x in candidates.split(",") if x.strip()] if candidates else "all"
    sel = c.model_selection.create(dataset_id, chosen, max_examples=max_examples)
    if wait:
        sel = c.model_selection.wait(sel.id)
    if as_json:
        return emit_json(sel)
    _ranking(sel)


@app.command()
def ranking(selection_id: str = typer.Argument(..., help="The model selection (msel_…)."),
            as_json: bool = JsonOption) -> None:
    """A model selection's ranking, best first."""
    sel = client().model_selection.get(selection_id)
    if as_json:
        return emit_json(sel)
    _ranking(sel)
