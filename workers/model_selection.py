"""Computes one model selection: claim it → read the dataset → for each candidate base model,
its frozen features (from the shared feature cache where present, stored there otherwise) →
LogME and the k-NN probe → the ranking on the row. Status changes go through
app.model_selection.lifecycle."""
import logging
import random
import time
from dataclasses import dataclass

from app.base_models import catalog
from app.base_models.catalog import BaseModelEntry
from app.config import Settings, get_settings
from app.datasets.parsing import DatasetInvalid
from app.db import session_scope
from app.errors import AppError
from app.ml import selection
from app.ml.feature_cache import FeatureCache
from app.model_selection import lifecycle
from app.models import Dataset, ModelSelection
from app.storage import get_storage
from workers.lease import Lease
from workers.plan import DataFile, JobFailed, dataset_examples, resolve_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectionPlan:
    selection_id: str
    tenant: str
    data: DataFile
    labels: list[str]
    candidates: list[BaseModelEntry]
    max_examples: int


def run_selection(selection_id: str, worker_id: str) -> None:
    """Claim and compute the selection; every outcome ends on its row."""
    settings = get_settings()
    if not lifecycle.claim(selection_id, worker_id, settings.lease_s):
        log.info("model selection %s is not queued: skipping", selection_id)
        return
    lease = Lease(selection_id, worker_id, settings.lease_s, renew=lifecycle.renew).start()
    try:
        lifecycle.succeed(selection_id, worker_id, rank(_read(selection_id, settings), settings))
    except (JobFailed, DatasetInvalid) as exc:
        lifecycle.fail(selection_id, worker_id, getattr(exc, "code", "dataset_invalid"),
                       str(exc))
    except Exception as exc:  # noqa: BLE001 - deterministic: the same data fails again
        log.exception("model selection %s failed", selection_id)
        lifecycle.fail(selection_id, worker_id, "selection_error",
                       f"Ranking failed: {exc.__class__.__name__}: {exc}")
    finally:
        lease.stop()


def _read(selection_id: str, settings: Settings) -> SelectionPlan:
    with session_scope() as s:
        row = s.get(ModelSelection, selection_id)
        ds = s.get(Dataset, row.dataset_id)
        if ds is None or ds.status != "ready":
            raise JobFailed("dataset_deleted", "The dataset was deleted before the ranking ran.")
        try:
            entries = [catalog.resolve(settings, c, s, row.tenant_id) for c in row.candidates]
        except AppError as exc:
            raise JobFailed("base_model_unavailable", exc.message) from None
        key, fmt, text_col, label_col = ds.storage_key, ds.format, ds.text_column, ds.label_column
        plan = dict(selection_id=row.id, tenant=row.tenant_id, labels=list(ds.labels),
                    candidates=entries, max_examples=row.max_examples)
    return SelectionPlan(data=DataFile(get_storage().fetch(key), fmt, text_col, label_col),
                         **plan)


def rank(plan: SelectionPlan, settings: Settings) -> list[dict]:
    """Every candidate's scores, best LogME first."""
    inputs, names = dataset_examples(plan.data)
    if len(inputs) > plan.max_examples:  # a seeded subset: the same one every time
        keep = sorted(random.Random(0).sample(range(len(inputs)), plan.max_examples))
        inputs, names = [inputs[i] for i in keep], [names[i] for i in keep]
    index = {name: i for i, name in enumerate(plan.labels)}
    labels = [index[n] for n in names]
    cache = (FeatureCache(settings.data_dir / "cache" / "features", settings.feature_cache_bytes)
             if settings.feature_cache_bytes else None)
    device = resolve_device(settings.worker_device)
    results = [score(entry, inputs, labels, plan, cache, device) for entry in plan.candidates]
    results.sort(key=lambda r: r["logme"], reverse=True)
    for i, r in enumerate(results, 1):
        r["rank"] = i
    return results


def score(entry: BaseModelEntry, inputs: list, labels: list[int], plan: SelectionPlan,
          cache: FeatureCache | None, device: str) -> dict:
    """One candidate: features (the head job's namespace: tenant + base model revision), then
    LogME and the k-NN probe, each timed."""
    namespace = f"{plan.tenant}/{entry.id}@{entry.revision}"
    t0 = time.perf_counter()
    if entry.task == "image-classification":
        feats, stats = selection.image_features(entry.architecture, entry.local_path(),
                                                plan.data.path, inputs, cache,
                                                f"{namespace}/pooled", device=device)
    else:
        feats, stats = selection.text_features(entry.local_path(), inputs, cache, namespace,
                                               device)
    t1 = time.perf_counter()
    logme = selection.logme(feats.numpy(), labels)
    knn = selection.knn_accuracy(feats, labels)
    t2 = time.perf_counter()
    return {"base_model": entry.id, "rank": 0, "logme": round(logme, 6),
            "knn_accuracy": round(knn, 6), "feature_dim": int(feats.shape[1]),
            "examples": len(labels),
            "features_cached": int(stats.get("examples", 0) - stats.get("computed", 0)),
            "seconds": {"features": round(t1 - t0, 3), "scoring": round(t2 - t1, 3),
                        "total": round(t2 - t0, 3)}}
