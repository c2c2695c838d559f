"""`adapt datasets upload|list|show|delete`."""
from __future__ import annotations

from itertools import islice
from pathlib import Path
from typing import Optional

import typer

from adapt.cli._common import JsonOption, client, console, emit_json, fields, table

app = typer.Typer(no_args_is_help=True, help="Upload and inspect datasets.")
SHOW = ("id", "name", "task", "format", "num_examples", "labels", "class_counts", "bytes",
        "sha256", "status", "created_at")


@app.command()
def upload(path: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True,
                                       help="CSV (header row), JSONL, or an image ZIP."),
           name: Optional[str] = typer.Option(None, help="Defaults to the file name."),
           task: Optional[str] = typer.Option(None, help="text-classification or "
                                                         "image-classification (inferred)."),
           text_column: Optional[str] = typer.Option(None, help="(default text)"),
           label_column: Optional[str] = typer.Option(None, help="(default label)"),
           idempotency_key: Optional[str] = typer.Option(None, help="Retry-safe: the same key "
                                                         "returns the first upload."),
           as_json: bool = JsonOption) -> None:
    """Upload a labelled dataset (streamed; validated before it returns)."""
    ds = client().datasets.upload(path, name=name, task=task, text_column=text_column,
                                  label_column=label_column, idempotency_key=idempotency_key)
    emit_json(ds) if as_json else fields(ds, SHOW)


@app.command("list")
def list_(limit: int = typer.Option(20, min=1, help="Show at most this many."),
          all_: bool = typer.Option(False, "--all", help="Show every dataset."),
          as_json: bool = JsonOption) -> None:
    """Datasets, newest first."""
    rows = list(islice(client().datasets.list(limit=min(limit, 100)), None if all_ else limit))
    if as_json:
        return emit_json(rows)
    table(None, ("id", "name", "task", "examples", "labels", "status", "created"),
          ((d.id, d.name, d.task, d.num_examples, ", ".join(d.labels[:6]), d.status,
            d.created_at.strftime("%Y-%m-%d %H:%M")) for d in rows))


@app.command()
def show(dataset_id: str, as_json: bool = JsonOption) -> None:
    """One dataset, with its quality report in brief."""
    ds = client().datasets.get(dataset_id)
    if as_json:
        return emit_json(ds)
    fields(ds, SHOW)
    _quality_lines(ds.quality)


def _quality_lines(report) -> None:
    """`quality  <status>` and, when it has finished, its counts and warnings."""
    if report is None:
        return console.print("quality       none (adapt datasets check ID asks for one)")
    console.print(f"quality       {report.status} ({report.id})", soft_wrap=True)
    if report.error:
        console.print(f"  error: {report.error.get('message')}", markup=False, soft_wrap=True)
    summary = dict(report.summary or {})
    for warning in summary.pop("warnings", []):
        console.print(f"  - {warning}", markup=False, soft_wrap=True)
    if summary:
        console.print("  " + ", ".join(f"{k} {v}" for k, v in summary.items()), markup=False,
                      soft_wrap=True)


@app.command()
def check(dataset_id: str,
          against: Optional[str] = typer.Option(None, help="Another dataset (e.g. the "
                                                "validation data): report the duplicates "
                                                "across the two."),
          wait: bool = typer.Option(False, "--wait", help="Wait for the report."),
          as_json: bool = JsonOption) -> None:
    """Ask a worker for a data-quality report (duplicates, class balance, lengths, likely
    label errors; or duplicates across another dataset)."""
    datasets = client().datasets
    report = datasets.check_quality(dataset_id, against=against)
    if wait:
        report = datasets.wait_quality(dataset_id, against=against)
    emit_json(report) if as_json else _quality_lines(report)


@app.command()
def quality(dataset_id: str,
            against: Optional[str] = typer.Option(None, help="The report across this dataset."),
            wait: bool = typer.Option(False, "--wait", help="Wait until it has finished."),
            as_json: bool = JsonOption) -> None:
    """The dataset's newest quality report (--json: with the rows it names)."""
    datasets = client().datasets
    report = (datasets.wait_quality(dataset_id, against=against) if wait
              else datasets.quality(dataset_id, against=against))
    emit_json(report) if as_json else _quality_lines(report)


@app.command()
def delete(dataset_id: str, as_json: bool = JsonOption) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    ds = client().datasets.delete(dataset_id)
    emit_json(ds) if as_json else typer.echo(f"deleted {ds.id}")
