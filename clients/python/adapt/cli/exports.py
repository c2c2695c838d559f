"""`adapt exports list|show|download|delete` and `adapt models export` (ONNX exports)."""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Optional

import typer

from adapt.cli._common import JsonOption, client, console, emit_json, fields, table
from adapt.types import Export

app = typer.Typer(no_args_is_help=True, help="Models exported to ONNX: list, download, delete.")
QUANTIZE = ("int8", "fp16")


def _num(value: float | None, fmt: str) -> str:
    return "" if value is None else format(value, fmt)


def row(e: Export) -> tuple:
    """format, quantize, status, size, latency b1/b32, accuracy and its delta."""
    ev = e.evaluation or {}
    exp, delta = ev.get("export", {}), ev.get("delta", {})
    return (e.id, e.format, e.quantize or "fp32", e.status,
            _num(e.size_bytes and e.size_bytes / 1e6, ".1f"),
            _num(exp.get("latency_ms_b1"), ".1f"), _num(exp.get("latency_ms_b32"), ".1f"),
            _num(exp.get("accuracy"), ".4f"),
            _num(delta.get("accuracy") is not None and delta["accuracy"] * 100, "+.2f"))


COLUMNS = ("id", "format", "quantize", "status", "MB", "ms b1", "ms b32", "accuracy", "Δ points")


def create(model_id: str = typer.Argument(..., help="The model (mdl_…) to export."),
           format: str = typer.Option("onnx", "--format", help="Only onnx for now."),
           quantize: Optional[str] = typer.Option(None, "--quantize",
                                                  help="int8 or fp16 (default: fp32)."),
           wait: bool = typer.Option(False, "--wait", help="Wait until it has been built."),
           as_json: bool = JsonOption) -> None:
    """Export a model to ONNX; a worker builds it and measures it beside the original."""
    if quantize is not None and quantize not in QUANTIZE:
        raise typer.BadParameter("int8 or fp16", param_hint="--quantize")
    c = client()
    export = c.exports.create(model_id, format=format, quantize=quantize)
    if wait:
        export = c.exports.wait(export.id)
    if as_json:
        return emit_json(export)
    table(None, COLUMNS, [row(export)])
    if export.error:
        console.print(f"[red]{export.error.get('message')}[/red]")


@app.command("list")
def list_(model_id: str = typer.Argument(..., help="The model (mdl_…)."),
          limit: int = typer.Option(20, min=1, help="Show at most this many."),
          as_json: bool = JsonOption) -> None:
    """A model's exports, newest first, with their measured size, latency and accuracy."""
    rows = list(islice(client().exports.list(model_id, limit=min(limit, 100)), limit))
    if as_json:
        return emit_json(rows)
    table(None, COLUMNS, (row(e) for e in rows))


@app.command()
def show(export_id: str, as_json: bool = JsonOption) -> None:
    """One export and its evaluation beside the original model's."""
    export = client().exports.get(export_id)
    if as_json:
        return emit_json(export)
    fields(export, ("id", "model", "status", "format", "quantize", "size_bytes", "sha256",
                    "error", "created_at", "finished_at"))
    ev = export.evaluation or {}
    if ev:
        table("on the validation data", ("", "accuracy", "macro-F1", "ms b1", "ms b32", "MB"),
              ((side, _num(ev[side]["accuracy"], ".4f"), _num(ev[side]["macro_f1"], ".4f"),
                _num(ev[side]["latency_ms_b1"], ".2f"), _num(ev[side]["latency_ms_b32"], ".2f"),
                _num(ev[side]["size_bytes"] / 1e6, ".1f")) for side in ("original", "export")))


@app.command()
def download(export_id: str,
             output: Path = typer.Option(Path("."), "-o", "--output",
                                         help="A file, or a directory for <export id>.zip."),
             as_json: bool = JsonOption) -> None:
    """Download the export's ZIP (model.onnx, tokenizer or preprocessing, labels, README)."""
    path = client().exports.download(export_id, output)
    if as_json:
        return emit_json({"path": str(path), "bytes": path.stat().st_size})
    console.print(f"saved {path} ({path.stat().st_size:,} bytes)")


@app.command()
def delete(export_id: str, as_json: bool = JsonOption) -> None:
    """Delete an export and its archive."""
    export = client().exports.delete(export_id)
    emit_json(export) if as_json else typer.echo(f"deleted {export.id}")
