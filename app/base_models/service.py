"""Bring your own pretrained weights: checked against the architecture, stored as safetensors.
A .pth/.pt file is read only through torch.load(weights_only=True): nothing is ever unpickled."""
import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import save_file
from sqlalchemy.orm import Session
from transformers import AutoConfig, AutoModel, AutoTokenizer

from app.base_models.catalog import TEXT_MODEL_TYPES
from app.db import on_rollback
from app.errors import InvalidInput
from app.ids import new_id
from app.ml.vision import ARCHITECTURES, check_state_dict, load_weights
from app.models import UploadedBaseModel
from app.storage import Storage
from app.uploads import StagedUpload

FLOAT_DTYPES = {torch.float32, torch.float16, torch.bfloat16, torch.float64}


def _read_state(staged: StagedUpload, filename: str) -> dict[str, torch.Tensor]:
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


def _mismatch(architecture: str, problems: list[dict]) -> InvalidInput:
    return InvalidInput(f"The tensors do not fit {architecture}: {len(problems)} problem(s), "
                        f"the first: {problems[0]['key']} {problems[0]['message']}.",
                        param="file", code="weights_mismatch",
                        details=[p for kind in ("missing", "unexpected", "shape")
                                 for p in [q for q in problems
                                           if q["message"].startswith(kind)][:20]])


def _text_config(architecture: str, config_json: str | None):
    if not config_json:
        raise InvalidInput(f"A {architecture} model needs its transformers `config` (JSON).",
                           param="config")
    try:
        values = json.loads(config_json)
        if not isinstance(values, dict):
            raise ValueError("not a JSON object")
        values.pop("model_type", None)
        return AutoConfig.for_model(architecture, **values)
    except (ValueError, TypeError, RecursionError) as exc:
        raise InvalidInput(f"config is not a valid {architecture} configuration: "
                           f"{str(exc)[:200]}", param="config") from None


def _check_text_state(config, state: dict) -> tuple[list[dict], dict]:
    """Missing / unexpected / mis-shaped keys against the encoder the config describes (a
    checkpoint saved from a model with a head may prefix keys with the encoder's name)."""
    expected = AutoModel.from_config(config).state_dict()
    firsts = {k.split(".", 1)[0] for k in state}
    if len(firsts) == 1 and not any(k in expected for k in state):  # e.g. every key "bert.…"
        state = {k.split(".", 1)[1]: v for k, v in state.items() if "." in k}
    problems = [{"key": k, "message": "missing"} for k in expected
                if k not in state and not k.startswith("pooler.")]  # the pooler is never used
    problems += [{"key": k, "message": "unexpected"} for k in state if k not in expected]
    problems += [{"key": k, "message": f"shape {list(state[k].shape)}, expected "
                  f"{list(expected[k].shape)}"}
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    return problems, state


def _create_text(storage: Storage, row: UploadedBaseModel, state: dict, config,
                 tokenizer_dir: Path) -> None:
    problems, state = _check_text_state(config, state)
    if problems:
        raise _mismatch(row.architecture, problems)
    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    if config.vocab_size < len(tokenizer):
        raise InvalidInput(f"vocab_size {config.vocab_size} is smaller than the tokenizer's "
                           f"{len(tokenizer)} tokens.", param="config")
    out = storage.staging_dir()
    config.save_pretrained(out)
    tokenizer.save_pretrained(out)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
    row.storage_key = f"base_models/{row.tenant_id}/{row.id}"
    storage.put_dir(row.storage_key, out)


def create(session: Session, storage: Storage, tenant: str, *, staged: StagedUpload,
           filename: str, architecture: str, name: str | None, task: str | None,
           config: str | None = None, tokenizer_dir: Path | None = None) -> UploadedBaseModel:
    """Check the tensors fit the architecture, then store them as safetensors."""
    if architecture in TEXT_MODEL_TYPES:
        return _create_text_model(session, storage, tenant, staged=staged, filename=filename,
                                  architecture=architecture, name=name, task=task,
                                  config=config, tokenizer_dir=tokenizer_dir)
    if architecture not in ARCHITECTURES:
        raise InvalidInput(f"Unknown architecture {architecture!r}; one of: "
                           f"{', '.join(ARCHITECTURES)}, or a transformers model type "
                           f"({', '.join(sorted(TEXT_MODEL_TYPES))}).", param="architecture")
    if task not in (None, "image-classification"):
        raise InvalidInput(f"{architecture} is an image-classification architecture.",
                           param="task")
    state = _read_state(staged, filename)
    if problems := check_state_dict(architecture, state):
        raise _mismatch(architecture, problems)
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


def _create_text_model(session: Session, storage: Storage, tenant: str, *,
                       staged: StagedUpload, filename: str, architecture: str, name: str | None,
                       task: str | None, config: str | None, tokenizer_dir: Path | None
                       ) -> UploadedBaseModel:
    if task not in (None, "text-classification"):
        raise InvalidInput(f"{architecture} is a text architecture.", param="task")
    parsed_config = _text_config(architecture, config)
    state = _read_state(staged, filename)
    row = UploadedBaseModel(id=new_id("bm"), tenant_id=tenant, name=name or filename,
                            task="text-classification", architecture=architecture,
                            parameters=sum(v.numel() for v in state.values()
                                           if v.dtype in FLOAT_DTYPES),
                            sha256=staged.sha256, storage_key="")
    _create_text(storage, row, state, parsed_config, tokenizer_dir)
    on_rollback(session, lambda: storage.delete(row.storage_key))
    session.add(row)
    session.flush()
    return row
