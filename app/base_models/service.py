"""Bring your own pretrained weights: checked against the architecture, stored as safetensors.
A .pth/.pt file is read only through torch.load(weights_only=True): nothing is ever unpickled."""
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.datasets.service import StagedUpload
from app.errors import InvalidInput, NotFound
from app.ids import new_id
from app.db import on_rollback
from app.models import UploadedBaseModel
from app.storage import LocalStorage

FLOAT_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64}


def _read_state(staged: StagedUpload, filename: str) -> dict[str, torch.Tensor]:
    from app.ml.vision import load_weights

    suffix = Path(filename).suffix.lower()
    if suffix not in (".safetensors", ".pth", ".pt"):
        raise InvalidInput("Upload a .safetensors file (or a .pth/.pt state dict).", param="file",
                           code="unsupported_file_type")
    path = staged.path.with_suffix(suffix)
    staged.path.rename(path)
    staged.path = path
    try:
        state = load_weights(path)
    except (SafetensorError, OSError, ValueError, RuntimeError, EOFError) as exc:
        kind = "safetensors" if suffix == ".safetensors" else "weights-only state dict"
        raise InvalidInput(f"The file is not a valid {kind}: nothing in it was executed "
                           f"({str(exc)[:200]}).", param="file", code="weights_invalid") from None
    except Exception as exc:  # noqa: BLE001 - the weights-only unpickler refuses in many ways
        raise InvalidInput("The file is not a plain state dict: the weights-only loader refused "
                           f"it and nothing in it was executed ({exc.__class__.__name__}).",
                           param="file", code="weights_invalid") from None
    bad = sorted(k for k, v in state.items() if v.dtype not in FLOAT_DTYPES and not k.endswith(
        "num_batches_tracked"))
    if bad:
        raise InvalidInput("Weights must be floating point tensors.", param="file",
                           code="weights_invalid",
                           details=[{"key": k, "message": f"dtype {state[k].dtype}"}
                                    for k in bad[:20]])
    return state


def create(session: Session, storage: LocalStorage, tenant: str, *, staged: StagedUpload,
           filename: str, architecture: str, name: str | None, task: str | None
           ) -> UploadedBaseModel:
    """Check the tensors fit the architecture, then store them as safetensors."""
    from app.ml.vision import ARCHITECTURES, check_state_dict

    if architecture not in ARCHITECTURES:
        raise InvalidInput(f"Unknown architecture {architecture!r}; one of: "
                           f"{', '.join(ARCHITECTURES)} (uploading text models is not supported "
                           "yet).", param="architecture")
    if task not in (None, "image-classification"):
        raise InvalidInput(f"{architecture} is an image-classification architecture.",
                           param="task")
    state = _read_state(staged, filename)
    if problems := check_state_dict(architecture, state):
        raise InvalidInput(f"The tensors do not fit {architecture}: {len(problems)} problem(s), "
                           f"the first: {problems[0]['key']} {problems[0]['message']}.",
                           param="file", code="weights_mismatch",
                           details=[p for kind in ("missing", "unexpected", "shape")
                                    for p in [q for q in problems
                                              if q["message"].startswith(kind)][:20]])
    row = UploadedBaseModel(id=new_id("bm"), tenant_id=tenant, name=name or filename,
                            task="image-classification", architecture=architecture,
                            parameters=sum(v.numel() for k, v in state.items()
                                           if v.dtype in FLOAT_DTYPES),
                            sha256=staged.sha256, storage_key="")
    row.storage_key = f"base_models/{tenant}/{row.id}/model.safetensors"
    out = storage.staging_dir() / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    storage.put_file(row.storage_key, out)
    out.parent.rmdir()
    on_rollback(session, lambda: storage.delete(row.storage_key))
    session.add(row)
    session.flush()
    return row


def for_tenant(session: Session, tenant: str) -> list[UploadedBaseModel]:
    return list(session.scalars(select(UploadedBaseModel).where(
        UploadedBaseModel.tenant_id == tenant).order_by(UploadedBaseModel.id.desc())))


def get(session: Session, tenant: str, base_model_id: str) -> UploadedBaseModel:
    row = session.get(UploadedBaseModel, base_model_id)
    if row is None or row.tenant_id != tenant:
        raise NotFound(f"No base model {base_model_id!r}; GET /v1/base-models lists them.",
                       param="base_model")
    return row
