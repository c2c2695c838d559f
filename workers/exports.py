"""Builds one export: claim it → read the model's checkpoint and its job's validation data →
export to ONNX (quantised as asked) → measure the export and the original on that data →
store the archive and the figures. Every status change goes through app.exports.lifecycle."""
import hashlib
import logging
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch

from app import janitor
from app.config import get_settings
from app.datasets.parsing import DatasetInvalid
from app.db import session_scope
from app.exports import lifecycle
from app.ml import runtime_eval
from app.ml.data import Splits
from app.ml.onnx_export import export_onnx
from app.models import Checkpoint, Export, Model
from app.storage import get_storage
from workers.lease import Lease
from workers.plan import JobFailed, load_splits, read_plan

log = logging.getLogger(__name__)
CALIBRATION_IMAGES = 64  # training images that set an image model's int8 activation ranges


@dataclass(frozen=True)
class ExportPlan:
    export_id: str
    tenant: str
    model_id: str
    job_id: str
    quantize: str | None
    ckpt_dir: Path


def run_export(export_id: str, worker_id: str) -> None:
    """Claim and build the export; every outcome ends on its row."""
    settings = get_settings()
    if not lifecycle.claim(export_id, worker_id, settings.lease_s):
        log.info("export %s is not queued (claimed, failed or deleted): skipping", export_id)
        return
    lease = Lease(export_id, worker_id, settings.lease_s, renew=lifecycle.renew).start()
    work_dir = janitor.owned_dir(settings.data_dir / "work", f"{export_id}-")
    try:
        _build(_read(export_id), worker_id, work_dir)
    except (JobFailed, DatasetInvalid) as exc:
        lifecycle.fail(export_id, worker_id, "validation_data_unavailable", exc.message)
    except Exception as exc:  # noqa: BLE001 - deterministic: the same model fails again
        log.exception("export %s failed", export_id)
        lifecycle.fail(export_id, worker_id, "export_error",
                       f"Export failed: {exc.__class__.__name__}: {exc}")
    finally:
        lease.stop()
        shutil.rmtree(work_dir, ignore_errors=True)


def _read(export_id: str) -> ExportPlan:
    with session_scope() as s:
        export = s.get(Export, export_id)
        model = s.get(Model, export.model_id)
        ckpt = s.get(Checkpoint, model.checkpoint_id)
        return ExportPlan(export.id, export.tenant_id, model.id, model.job_id, export.quantize,
                          get_storage().fetch(ckpt.storage_key))


def _build(plan: ExportPlan, worker_id: str, work_dir: Path) -> None:
    job_plan = read_plan(plan.job_id, get_settings())
    splits = load_splits(job_plan)
    images = job_plan.train.path if job_plan.train.format == "zip" else None
    inputs = runtime_eval.Inputs(plan.ckpt_dir, images)
    calibration = ([inputs.batch(splits.train_x[i:i + 16])["pixel_values"]
                    for i in range(0, min(len(splits.train_x), CALIBRATION_IMAGES), 16)]
                   if inputs.image and plan.quantize == "int8" else None)
    onnx_path = export_onnx(plan.ckpt_dir, work_dir / "export", plan.quantize, calibration)
    evaluation = evaluate(plan.ckpt_dir, onnx_path, inputs, splits)
    archive = _zip(work_dir / "export", work_dir / f"{plan.export_id}.zip")
    key = f"exports/{plan.tenant}/{plan.model_id}/{plan.export_id}.zip"
    storage, sha256 = get_storage(), _sha256(archive)
    size = storage.put_file(key, archive)
    if not lifecycle.succeed(plan.export_id, worker_id, storage_key=key, size_bytes=size,
                             sha256=sha256, evaluation=evaluation):
        storage.delete(key)  # deleted (or expired) while it was built: keep nothing
    log.info("export %s: %d bytes, %s", plan.export_id, size, evaluation["delta"])


def evaluate(ckpt_dir: Path, onnx_path: Path, inputs: runtime_eval.Inputs,
             splits: Splits) -> dict:
    """The original (PyTorch, fp32) and the export (onnxruntime) on the validation data."""
    got = runtime_eval.measure({"original": runtime_eval.torch_runner(ckpt_dir),
                                "export": runtime_eval.onnx_runner(onnx_path)},
                               inputs, splits.val_x, splits.val_y, splits.labels)
    change = runtime_eval.delta(got["original"], got["export"])
    sides = {side: {k: v for k, v in got[side].items() if k != "predictions"} for side in got}
    return {"examples": len(splits.val_y), "threads": torch.get_num_threads(),
            "runtime": {"original": "pytorch fp32 (CPU)",
                        "export": "onnxruntime CPUExecutionProvider"},
            **sides, "delta": change}


def _zip(src: Path, out: Path) -> Path:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():  # weights barely compress: stored, not deflated
                zf.write(path, path.relative_to(src).as_posix(),
                         compress_type=zipfile.ZIP_STORED if path.suffix == ".onnx" else None)
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
