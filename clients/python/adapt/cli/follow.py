"""`adapt jobs follow`: a live progress bar fed by the job's event stream, then the evaluation."""
from __future__ import annotations

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from adapt.cli._common import EXIT_API_ERROR, console, emit_json, err_console
from adapt.cli.report import print_evaluation, print_metrics
from adapt.client import Client
from adapt.errors import NotFound
from adapt.types import Evaluation, Job, JobEvent, JobProgress


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-:--"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _bar() -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("steps  ETA {task.fields[eta]}  loss {task.fields[loss]}"),
                    console=console)


def _evaluation(client: Client, job: Job) -> Evaluation | None:
    if not job.model:
        return None
    try:
        return client.models.evaluation(job.model)
    except NotFound:
        return None


def _update(bar: Progress, task: int, p: JobProgress) -> None:
    bar.update(task, description=f"epoch {max(p.epoch or 0, 1)}/{p.epochs}",
               total=p.total_steps, completed=p.step or 0, eta=_eta(p.eta_seconds),
               loss="-" if p.train_loss is None else f"{p.train_loss:.4f}")


def follow_job(client: Client, job_id: str, as_json: bool) -> int:
    """Stream the job until it has finished; the exit status (0 = succeeded). The job is read
    first, so an unknown one is an error before any progress bar is drawn."""
    client.jobs.get(job_id)
    if as_json:
        for item in client.jobs.stream(job_id, progress=True):
            kind = "event" if isinstance(item, JobEvent) else "progress"
            emit_json({"object": kind, **item.to_dict()})
    else:
        with _bar() as bar:
            task = bar.add_task("queued", total=None, eta="-:--", loss="-")
            for item in client.jobs.stream(job_id, progress=True):
                if isinstance(item, JobProgress):
                    _update(bar, task, item)
                else:
                    stamp = item.created_at.strftime("%H:%M:%S")
                    bar.console.print(f"{stamp} {item.message}", markup=False, soft_wrap=True)
    job = client.jobs.get(job_id)
    evaluation = _evaluation(client, job)
    if as_json:
        emit_json({**job.to_dict(), "evaluation": evaluation.to_dict() if evaluation else None})
    else:
        _summary(job, evaluation)
    return 0 if job.status == "succeeded" else EXIT_API_ERROR


def _summary(job: Job, evaluation: Evaluation | None) -> None:
    took = ""
    if job.started_at and job.finished_at:
        took = f" in {(job.finished_at - job.started_at).total_seconds():.1f}s"
    console.print(f"job {job.id} {job.status}{took}"
                  + (f": model {job.model}" if job.model else ""), markup=False)
    if job.error:
        err_console.print(f"error: {job.error.code}: {job.error.message}", markup=False,
                          soft_wrap=True)
    if evaluation:
        print_evaluation(evaluation)
    elif job.metrics:
        print_metrics(job.metrics)
