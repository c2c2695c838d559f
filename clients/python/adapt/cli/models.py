"""`adapt models list|show|predict|download|delete`."""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import List, Optional

import typer

from adapt.cli._common import JsonOption, client, console, emit_json, fields, table
from adapt.cli.report import print_evaluation
from adapt.errors import NotFound

app = typer.Typer(no_args_is_help=True, help="Fine-tuned models: inspect, predict, download.")


@app.command("list")
def list_(limit: int = typer.Option(20, min=1, help="Show at most this many."),
          all_: bool = typer.Option(False, "--all", help="Show every model."),
          as_json: bool = JsonOption) -> None:
    """Models, newest first."""
    rows = list(islice(client().models.list(limit=min(limit, 100)), None if all_ else limit))
    if as_json:
        return emit_json(rows)
    table(None, ("id", "name", "base model", "labels", "job", "created"),
          ((m.id, m.name, m.base_model, ", ".join(m.labels[:6]), m.job,
            m.created_at.strftime("%Y-%m-%d %H:%M")) for m in rows))


@app.command()
def show(model_id: str, as_json: bool = JsonOption) -> None:
    """One model and its evaluation on the validation data."""
    c = client()
    model = c.models.get(model_id)
    try:
        evaluation = c.models.evaluation(model_id)
    except NotFound:
        evaluation = None
    if as_json:
        return emit_json({**model.to_dict(), "evaluation": evaluation})
    fields(model, ("id", "name", "task", "base_model", "labels", "job", "checkpoint",
                   "created_at"))
    if evaluation:
        print_evaluation(evaluation)


@app.command()
def predict(model_id: str,
            texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify."),
            image: Optional[List[Path]] = typer.Option(None, exists=True, dir_okay=False,
                                                       help="An image file (repeatable)."),
            top_k: Optional[int] = typer.Option(None, min=1, help="Scores of the k best labels."),
            as_json: bool = JsonOption) -> None:
    """Labels and scores for texts (arguments) or images (--image)."""
    inputs = list(texts or []) + [p.read_bytes() for p in image or []]
    if not inputs:
        raise typer.BadParameter("give at least one text or --image", param_hint="TEXTS")
    result = client().models.predict(model_id, inputs, top_k=top_k)
    if as_json:
        return emit_json(result)
    names = list(texts or []) + [str(p) for p in image or []]
    table(None, ("input", "label", "score", "top"),
          ((name[:60], p.label, f"{p.score:.4f}",
            ", ".join(f"{t.label} {t.score:.3f}" for t in p.top))
           for name, p in zip(names, result.predictions)))


@app.command()
def download(model_id: str = typer.Argument(..., help="A model (mdl_…) or a checkpoint (ckpt_…)."),
             output: Path = typer.Option(Path("."), "-o", "--output",
                                         help="A file, or a directory for <ckpt id>.zip."),
             as_json: bool = JsonOption) -> None:
    """Download the model's checkpoint: a ZIP that transformers loads as it is."""
    c = client()
    path = (c.checkpoints.download(model_id, output) if model_id.startswith("ckpt_")
            else c.models.download(model_id, output))
    if as_json:
        return emit_json({"path": str(path), "bytes": path.stat().st_size})
    console.print(f"saved {path} ({path.stat().st_size:,} bytes)")


@app.command()
def delete(model_id: str, as_json: bool = JsonOption) -> None:
    """Delete a model."""
    model = client().models.delete(model_id)
    emit_json(model) if as_json else typer.echo(f"deleted {model.id}")
