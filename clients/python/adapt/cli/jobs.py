"""`adapt jobs create|list|show|cancel|follow|metrics|compare`."""
from __future__ import annotations

import json
from itertools import islice
from typing import Any, List, Optional

import typer
from rich.table import Table

from adapt.cli._common import JsonOption, client, console, emit_json, fields, table
from adapt.cli.follow import follow_job
from adapt.errors import ValidationError
from adapt.hyperparameters import HYPERPARAMETERS, LOWER_IS_BETTER
from adapt.types import Job, Metric

app = typer.Typer(no_args_is_help=True, help="Fine-tune jobs: start, watch, cancel.")
SHOW = ("id", "status", "base_model", "training_dataset", "validation_dataset", "method",
        "teacher", "transfer_dataset", "source_model", "hyperparameters", "progress", "metrics",
        "error", "model", "attempts", "created_at", "started_at", "finished_at", "metadata", "resources",
        "dry_run", "preflight")


def _value(text: str) -> Any:
    """`3` → 3, `5e-5` → 5e-05, `auto` → "auto"."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _pairs(items: list[str] | None, option: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected KEY=VALUE, got {item!r}", param_hint=option)
        out[key] = value
    return out


@app.command()
def create(base_model: str = typer.Option(..., "--base-model", "-b",
                                          help="A base model id (adapt-serve's catalog)."),
           dataset: str = typer.Option(..., "--dataset", "-d", help="The training dataset."),
           validation_dataset: Optional[str] = typer.Option(None),
           validation_split: Optional[float] = typer.Option(None, help="(default 0.1)"),
           method: Optional[str] = typer.Option(None, help="full, head, partial, lora or "
                                                          "distill (default full)"),
           teacher: Optional[str] = typer.Option(None, help="--method distill: the teacher "
                                                 "model (mdl_…)."),
           transfer_dataset: Optional[str] = typer.Option(
               None, help="--method distill, text: a dataset whose texts the teacher labels for "
                          "the student (its own labels are not read)."),
           epochs: Optional[int] = typer.Option(None, min=1),
           batch_size: Optional[int] = typer.Option(None, min=1),
           learning_rate: Optional[float] = typer.Option(None),
           max_length: Optional[int] = typer.Option(None, min=1),
           hp: Optional[List[str]] = typer.Option(None, "--hp", help="Any hyperparameter, "
                                                  "KEY=VALUE (repeatable)."),
           seed: Optional[int] = typer.Option(None),
           suffix: Optional[str] = typer.Option(None, help="Goes into the model's name."),
           metadata: Optional[List[str]] = typer.Option(None, help="KEY=VALUE (repeatable)."),
           device: Optional[str] = typer.Option(None, help="Which workers may take it: auto "
                                                           "(any, the default), cpu or gpu."),
           gpus: Optional[int] = typer.Option(None, min=0, help="GPUs it needs (implies "
                                                                "--device gpu; default 1 there)."),
           idempotency_key: Optional[str] = typer.Option(None),
           dry_run: bool = typer.Option(False, "--dry-run", help="A pre-flight only: peak "
                                        "memory, largest batch size, time estimates; no model."),
           follow: bool = typer.Option(False, "--follow", "-f", help="Then follow it."),
           as_json: bool = JsonOption) -> None:
    """Start a fine-tune job."""
    resources = {k: v for k, v in {"device": device, "gpus": gpus}.items() if v is not None}
    hyper = {k: _value(v) for k, v in _pairs(hp, "--hp").items()}
    hyper.update({k: v for k, v in {"epochs": epochs, "batch_size": batch_size,
                                    "learning_rate": learning_rate,
                                    "max_length": max_length}.items() if v is not None})
    try:
        job = client().jobs.create(
            base_model, dataset, method=method, hyperparameters=hyper or None,
            validation_dataset=validation_dataset, validation_split=validation_split, seed=seed,
            suffix=suffix, metadata=_pairs(metadata, "--metadata") or None, teacher=teacher,
            transfer_dataset=transfer_dataset, resources=resources or None, dry_run=dry_run, idempotency_key=idempotency_key)
    except ValidationError as exc:
        if (exc.param or "").startswith("hyperparameters.") and "unknown" in exc.message:
            exc.message += f". Valid names: {', '.join(HYPERPARAMETERS)}"
        raise
    if follow:
        raise typer.Exit(follow_job(client(), job.id, as_json))
    emit_json(job) if as_json else fields(job, SHOW)


@app.command("list")
def list_(status: Optional[str] = typer.Option(None, help="queued, running, cancelling, "
                                                          "succeeded, failed or cancelled."),
          limit: int = typer.Option(20, min=1, help="Show at most this many."),
          all_: bool = typer.Option(False, "--all", help="Show every job."),
          as_json: bool = JsonOption) -> None:
    """Jobs, newest first."""
    rows = list(islice(client().jobs.list(status=status, limit=min(limit, 100)),
                       None if all_ else limit))
    if as_json:
        return emit_json(rows)
    table(None, ("id", "status", "base model", "method", "steps", "model", "created"),
          ((j.id, j.status, j.base_model, j.method,
            f"{j.progress.step}/{j.progress.total_steps}" if j.progress else "", j.model,
            j.created_at.strftime("%m-%d %H:%M")) for j in rows))


@app.command()
def show(job_id: str, as_json: bool = JsonOption) -> None:
    """One job: status, progress, metrics, the model it made."""
    job = client().jobs.get(job_id)
    emit_json(job) if as_json else fields(job, SHOW)


@app.command()
def cancel(job_id: str, as_json: bool = JsonOption) -> None:
    """Cancel a queued or running job."""
    job = client().jobs.cancel(job_id)
    emit_json(job) if as_json else typer.echo(f"{job.id} {job.status}")


@app.command()
def follow(job_id: str, as_json: bool = JsonOption) -> None:
    """Follow a job live (progress bar, events) until it ends, then print its evaluation.
    Exit status 0 when it succeeded, 1 when it failed or was cancelled."""
    raise typer.Exit(follow_job(client(), job_id, as_json))



@app.command()
def metrics(job_id: str, csv: bool = typer.Option(False, "--csv", help="Print the CSV "
                                                  "(step,epoch,name,value) as the API sends it."),
            as_json: bool = JsonOption) -> None:
    """Every value the job logged: train loss per step, validation metrics per epoch."""
    if csv:
        return typer.echo(client().jobs.metrics_csv(job_id), nl=False)
    rows = client().jobs.metrics(job_id)
    if as_json:
        return emit_json(rows)
    table(None, ("step", "epoch", "name", "value"),
          ((m.step, f"{m.epoch:g}", m.name, f"{m.value:.6g}") for m in rows))


def best_metrics(values: list[Metric]) -> dict[str, float]:
    """The best value of each validation metric (lowest loss, highest accuracy and F1)."""
    best: dict[str, float] = {}
    for m in values:
        if not m.name.startswith("val_"):
            continue
        pick = min if m.name in LOWER_IS_BETTER else max
        best[m.name] = pick(best.get(m.name, m.value), m.value)
    return best


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.6g}"
    return json.dumps(value) if isinstance(value, (dict, list)) else str(value)


def compare_rows(jobs: list[Job], best: list[dict[str, float]]) -> list[tuple[str, list[str]]]:
    """(row name, one value a job): status, base model, method, each hyperparameter, the best
    of each validation metric."""
    rows = [("status", [j.status for j in jobs]), ("base model", [j.base_model for j in jobs]),
            ("method", [j.method for j in jobs]),
            ("training dataset", [j.training_dataset for j in jobs])]
    names = sorted({k for j in jobs for k in j.hyperparameters},
                   key=lambda k: (HYPERPARAMETERS.index(k) if k in HYPERPARAMETERS else 99, k))
    rows += [(k, [_cell(j.hyperparameters.get(k)) for j in jobs]) for k in names]
    rows += [("seed", [str(j.seed) for j in jobs])]
    metric_names = sorted({k for b in best for k in b})
    rows += [(f"best {k}", [_cell(b.get(k)) for b in best]) for k in metric_names]
    return rows


@app.command()
def compare(job_ids: List[str] = typer.Argument(..., metavar="JOB JOB...",
                                                help="Two or more jobs."),
            as_json: bool = JsonOption) -> None:
    """Jobs side by side: a column a job; rows for status, base model, method, every
    hyperparameter and the best validation metrics. Rows that differ are highlighted."""
    if len(job_ids) < 2:
        raise typer.BadParameter("give two or more jobs", param_hint="JOB")
    c = client()
    jobs = [c.jobs.get(job_id) for job_id in job_ids]
    best = [best_metrics(c.jobs.metrics(job.id)) for job in jobs]
    rows = compare_rows(jobs, best)
    if as_json:
        return emit_json({"jobs": [j.id for j in jobs],
                          "rows": [{"name": name, "values": values,
                                    "differs": len(set(values)) > 1} for name, values in rows]})
    t = Table(title=None)
    t.add_column("", overflow="fold")
    for j in jobs:
        t.add_column(j.id, no_wrap=True, min_width=len(j.id), overflow="fold")
    for name, values in rows:
        differs = len(set(values)) > 1
        t.add_row(("* " if differs else "  ") + name, *values,
                  style="bold yellow" if differs else None)
    console.print(t)
    console.print("* differs between the jobs", style="dim")
