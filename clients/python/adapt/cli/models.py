"""`adapt models list|show|predict|explain|download|export|delete|prune|descendants`."""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import List, Optional

import typer

from rich.text import Text

from adapt.cli import exports
from adapt.cli._common import JsonOption, client, console, emit_json, fields, table
from adapt.cli.follow import follow_job
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
                   "source_model", "created_at"))
    if model.compression:
        print_compression([model])
    if evaluation:
        print_evaluation(evaluation)


def print_compression(models) -> None:
    """Each compressed model's figures beside its source's."""
    def cell(c, key, fmt):
        return fmt.format(c[key]) if c.get(key) is not None else ""

    rows = []
    for m in models:
        c = m.compression or {}
        src, delta = c.get("source") or {}, c.get("delta") or {}
        rows.append((m.id, c.get("kind", ""), cell(c, "params", "{:,}"),
                     cell(c, "size_bytes", "{:,}"), cell(c, "latency_ms_b1", "{:.2f}"),
                     cell(src, "latency_ms_b1", "{:.2f}"), cell(delta, "speedup_b1", "{:.2f}×"),
                     cell(c, "accuracy", "{:.4f}"), cell(src, "accuracy", "{:.4f}"),
                     cell(delta, "accuracy", "{:+.4f}")))
    table("compression (vs source)", ("model", "kind", "params", "bytes", "ms b1", "src ms",
                                      "speed-up", "accuracy", "src acc", "Δ acc"), rows,
          ids=("model",))


@app.command()
def prune(model_id: str,
          ffn: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Share of every "
                                              "encoder layer's FFN channels to remove (< 1)."),
          heads: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Share of every "
                                                "encoder layer's attention heads to remove (< 1)."),
          channels: Optional[float] = typer.Option(None, min=0.0, max=1.0, help="Image models: "
                                                   "share of every convolution's channels to "
                                                   "remove (< 1)."),
          retrain_epochs: Optional[int] = typer.Option(None, min=1, help="(default 1)"),
          suffix: Optional[str] = typer.Option(None, help="Goes into the new model's name."),
          follow: bool = typer.Option(False, "--follow", "-f", help="Then follow the job."),
          as_json: bool = JsonOption) -> None:
    """Prune a text model's FFN channels and/or attention heads (an image model's convolution
    channels) and retrain it briefly: a job
    whose model compares itself with this one (params, size, latency, accuracy)."""
    c = client()
    job = c.models.prune(model_id, ffn=ffn, heads=heads, channels=channels,
                         retrain_epochs=retrain_epochs, suffix=suffix)
    if follow:
        raise typer.Exit(follow_job(c, job.id, as_json))
    emit_json(job) if as_json else fields(job, ("id", "status", "method", "source_model",
                                                "hyperparameters", "created_at"))


@app.command()
def descendants(model_id: str, as_json: bool = JsonOption) -> None:
    """The models distilled or pruned from this one, with their figures beside its own."""
    rows = client().models.descendants(model_id)
    if as_json:
        return emit_json(rows)
    print_compression(rows)


@app.command()
def predict(model_id: str,
            texts: Optional[List[str]] = typer.Argument(None, help="Texts to classify."),
            image: Optional[List[Path]] = typer.Option(None, exists=True, dir_okay=False,
                                                       help="An image file (repeatable)."),
            top_k: Optional[int] = typer.Option(None, min=1, help="Scores of the k best labels."),
            min_confidence: Optional[float] = typer.Option(
                None, min=0.0, max=1.0, help="Below this calibrated score: unsure (no label)."),
            as_json: bool = JsonOption) -> None:
    """Labels and calibrated scores for texts (arguments) or images (--image)."""
    inputs = list(texts or []) + [p.read_bytes() for p in image or []]
    if not inputs:
        raise typer.BadParameter("give at least one text or --image", param_hint="TEXTS")
    result = client().models.predict(model_id, inputs, top_k=top_k,
                                     min_confidence=min_confidence)
    if as_json:
        return emit_json(result)
    names = list(texts or []) + [str(p) for p in image or []]
    table(None, ("input", "label", "score", "top"),
          ((name[:60], p.label if not p.unsure else "(unsure)", f"{p.score:.4f}",
            ", ".join(f"{t.label} {t.score:.3f}" for t in p.top))
           for name, p in zip(names, result.predictions)))


def _shaded(words) -> Text:
    """The text's words coloured by score: green toward the target, red against, stronger
    colour for larger scores (relative to the text's largest)."""
    peak = max((abs(w.score) for w in words), default=0.0) or 1.0
    line = Text()
    for i, w in enumerate(words):
        strength = abs(w.score) / peak
        colour = "green" if w.score > 0 else "red"
        line.append(w.word, style=f"bold {colour}" if strength > 0.5
                    else colour if strength > 0.15 else "")
        if i < len(words) - 1:
            line.append(" ")
    return line


@app.command()
def explain(model_id: str,
            texts: Optional[List[str]] = typer.Argument(None, help="Texts to explain."),
            image: Optional[List[Path]] = typer.Option(None, exists=True, dir_okay=False,
                                                       help="An image file (repeatable)."),
            target: Optional[str] = typer.Option(None, help="The label to explain "
                                                 "(default: each input's predicted label)."),
            steps: Optional[int] = typer.Option(None, min=1, help="Integrated-gradients steps "
                                                "(texts and images)."),
            heatmaps: Optional[Path] = typer.Option(None, "--heatmaps", file_okay=False,
                                                    help="Save images' heatmaps (PNG) here."),
            as_json: bool = JsonOption) -> None:
    """Why the model predicts what it does: each word's score for texts (green: toward the
    target label, red: against), a heatmap for images (--heatmaps DIR saves them)."""
    inputs = list(texts or []) + [p.read_bytes() for p in image or []]
    if not inputs:
        raise typer.BadParameter("give at least one text or --image", param_hint="TEXTS")
    result = client().models.explain(model_id, inputs, target=target, steps=steps)
    if as_json:
        return emit_json(result)
    names = list(texts or []) + [str(p) for p in image or []]
    for i, (name, ex) in enumerate(zip(names, result.explanations)):
        console.print(Text.assemble((f"{ex.label}", "bold"), f" {ex.score:.3f}",
                                    f"  (explaining: {ex.target})"))
        if ex.words is not None:
            console.print(_shaded(ex.words))
            table(None, ("word", "score"), ((w.word, f"{w.score:+.4f}") for w in ex.words),
                  ids=("word",))
        elif ex.heatmap is not None:
            where = f"{ex.heatmap.width}×{ex.heatmap.height} heatmap"
            if heatmaps is not None:
                heatmaps.mkdir(parents=True, exist_ok=True)
                out = heatmaps / f"{Path(name).stem or i}-heatmap.png"
                out.write_bytes(ex.heatmap.png())
                where += f" saved to {out}"
            console.print(f"{name}: {where}")


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


app.command("export")(exports.create)


@app.command()
def delete(model_id: str, as_json: bool = JsonOption) -> None:
    """Delete a model."""
    model = client().models.delete(model_id)
    emit_json(model) if as_json else typer.echo(f"deleted {model.id}")
