"""Computes one dataset quality report: claim it → read the dataset (every row, or a seeded
sample of ADAPT_QUALITY_MAX_ROWS texts / ADAPT_QUALITY_MAX_IMAGES images) → the frozen base
model's features (through the shared feature cache) → the checks (app.ml.quality) → the report
on its row. Every status change goes through app.datasets.quality; any failure fails the report,
never the dataset."""
import logging
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.base_models import catalog
from app.config import Settings, get_settings
from app.datasets import images, parsing
from app.datasets import quality as lifecycle
from app.db import session_scope
from app.ml.config import resolve_hyperparameters
from app.ml.feature_cache import FeatureCache
from app.ml.quality import report
from app.ml.quality.sample import image_sample, text_sample
from app.models import Dataset, QualityReport
from app.storage import get_storage
from workers.lease import Lease
from workers.plan import resolve_device

log = logging.getLogger(__name__)
SEED = 0  # the sample of a capped dataset is the same every time
_NO_LIMITS = parsing.Limits(max_rows=10**9, max_text_chars=10**9, max_label_chars=10**9)


class DatasetGone(Exception):
    pass


@dataclass(frozen=True)
class DataRef:
    """A dataset as plain values, its file fetched from storage."""
    id: str
    task: str
    path: Path
    format: str
    text_column: str
    label_column: str
    labels: list[str]
    class_counts: dict[str, int]


def run_quality(report_id: str, worker_id: str) -> None:
    """Claim and compute the report; every outcome ends on its row."""
    settings = get_settings()
    if not lifecycle.claim(report_id, worker_id, settings.lease_s):
        log.info("quality report %s is not queued (claimed or deleted): skipping", report_id)
        return
    lease = Lease(report_id, worker_id, settings.lease_s, renew=lifecycle.renew).start()
    try:
        summary, details = compute(report_id, settings)
        lifecycle.succeed(report_id, worker_id, summary, details)
    except DatasetGone as exc:
        lifecycle.fail(report_id, worker_id, "dataset_deleted", str(exc))
    except Exception as exc:  # noqa: BLE001 - deterministic: odd data fails the report only
        log.exception("quality report %s failed", report_id)
        lifecycle.fail(report_id, worker_id, "quality_error",
                       f"The quality report failed: {exc.__class__.__name__}: {exc}")
    finally:
        lease.stop()


def _read(report_id: str) -> tuple[str, DataRef, DataRef | None]:
    with session_scope() as s:
        row = s.get(QualityReport, report_id)
        found = [s.get(Dataset, i) for i in (row.dataset_id, row.against_dataset_id) if i]
        if any(d is None or d.status != "ready" for d in found):
            raise DatasetGone("The dataset was deleted before its report was computed.")
        refs = [(d.id, d.task, d.storage_key, d.format, d.text_column, d.label_column,
                 list(d.labels), dict(d.class_counts)) for d in found]
        tenant = row.tenant_id
    storage = get_storage()
    data = [DataRef(r[0], r[1], storage.fetch(r[2]), *r[3:]) for r in refs]
    return tenant, data[0], data[1] if len(data) > 1 else None


def compute(report_id: str, settings: Settings) -> tuple[dict, dict]:
    """(summary, details) of the report."""
    tenant, dataset, against = _read(report_id)
    sample = _sample(dataset, tenant, settings)
    if against is not None:
        return report.across_report(sample, _sample(against, tenant, settings),
                                    near=_near(settings))
    max_length = _max_length(dataset.task)
    summary, details = report.own_report(sample, dataset.labels, dataset.class_counts,
                                         near=_near(settings), max_tokens=max_length)
    details["base_model"] = _model_id(dataset.task, settings)
    return summary, details


def _near(settings: Settings) -> report.Near:
    return report.Near(settings.quality_near_cosine, settings.quality_near_jaccard,
                       settings.quality_near_hamming)


def _max_length(task: str) -> int | None:
    """A job's default max_length (texts are truncated there, so are the features)."""
    return resolve_hyperparameters("head", {}, task).get("max_length")


def _model_id(task: str, settings: Settings) -> str:
    return (settings.quality_image_model if task == "image-classification"
            else settings.quality_text_model)


def sample_rows(rows: Iterable, cap: int,
                seed: int = SEED) -> tuple[list[tuple[int, object]], int]:
    """([(index, row)] in file order, rows in all): every row, or a seeded uniform sample of
    `cap` of them (reservoir sampling: one pass, memory for `cap` rows only)."""
    rng, kept, total = random.Random(seed), [], 0
    for total, row in enumerate(rows, start=1):
        if len(kept) < cap:
            kept.append((total - 1, row))
        elif (j := rng.randrange(total)) < cap:
            kept[j] = (total - 1, row)
    return sorted(kept, key=lambda item: item[0]), total


def _sample(ds: DataRef, tenant: str, settings: Settings) -> report.Sample:
    entry = catalog.resolve(settings, _model_id(ds.task, settings))
    namespace = f"{tenant}/{entry.id}@{entry.revision}"  # a job's: its `head` jobs start warm
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)
    device = resolve_device(settings.worker_device)
    if ds.format == "zip":
        found = images.inspect_zip(ds.path)  # validated at upload: names only, no decoding
        kept, total = sample_rows(found.members, settings.quality_max_images)
        return image_sample(entry.architecture, entry.local_path(), ds.path,
                            [{"row": i, "member": m} for i, (m, _) in kept],
                            [m for _, (m, _) in kept], [y for _, (_, y) in kept], total,
                            device=device, cache=cache, namespace=f"{namespace}/penultimate")
    rows = parsing.iter_examples(ds.path, ds.format, ds.text_column, ds.label_column, _NO_LIMITS)
    kept, total = sample_rows(rows, settings.quality_max_rows)
    return text_sample(entry.local_path(), [{"row": i, "line": r[0]} for i, r in kept],
                       [r[1] for _, r in kept], [r[2] for _, r in kept], total,
                       max_length=_max_length(ds.task), device=device,
                       precision=settings.train_precision, cache=cache, namespace=namespace)
