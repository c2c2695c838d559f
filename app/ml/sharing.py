"""Parameter sharing between models on one base: what export records so that a server can
load the base encoder (or an image network without its head) once, and the per-row LoRA deltas
that let one forward pass of the shared encoder serve rows of different adapters (base output +
B·A·x for the rows of each adapter, as multi-LoRA servers do).

adapt.json's `sharing` of a checkpoint:
- head models: {"kind": "head", "encoder_fingerprint": F}, F the fingerprint of the exported
  (frozen, hence the base's) encoder weights; a loader recomputes it from model.safetensors.
- lora models: {"kind": "lora", "base_fingerprint": F, "adapter": "adapter"}, F the fingerprint of
  the base encoder the adapter was trained on; adapter/ is peft's own adapter directory
  (adapter_model.safetensors + adapter_config.json). model.safetensors stays merged.
- image head models: {"kind": "head", "encoder_fingerprint": F}, F the fingerprint of every
  tensor but the head's (app.ml.vision.backbone_fingerprint).
Text models share a loaded encoder when F and their tokenizer files (tokenizer_fingerprint,
hashed at load) are equal: one encoder pass serves texts tokenized once.
"""
import contextlib
import hashlib
import json
import threading
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

ADAPTER_DIR = "adapter"
_PEFT_PREFIX = "base_model.model."


_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
           torch.float64: "F64", torch.int64: "I64", torch.int32: "I32", torch.int16: "I16",
           torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """A hash of names, dtypes, shapes and bytes: equal weights, equal fingerprints."""
    h = hashlib.blake2b(digest_size=16)
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous()
        h.update(f"{name}|{_DTYPES[t.dtype]}|{list(t.shape)}|".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def file_fingerprint(weights_file: Path, prefix: str = "encoder.",
                     exclude: str | None = None) -> str:
    """fingerprint() of a safetensors file's tensors under prefix (names without it), but for
    those under `exclude`, hashed from the file's bytes as they lie: no tensor is built, memory
    stays flat however many load."""
    h = hashlib.blake2b(digest_size=16)
    with open(weights_file, "rb") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        start = 8 + size
        for key in sorted(k for k in header if k.startswith(prefix) and k != "__metadata__"
                          and not (exclude and k.startswith(exclude))):
            entry = header[key]
            h.update(f"{key.removeprefix(prefix)}|{entry['dtype']}|{entry['shape']}|".encode())
            begin, end = entry["data_offsets"]
            f.seek(start + begin)
            while begin < end:
                piece = f.read(min(end - begin, 16 << 20))
                h.update(piece)
                begin += len(piece)
    return h.hexdigest()


# The files a tokenizer is saved as (transformers' save_pretrained, whichever it writes).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "added_tokens.json", "vocab.txt", "vocab.json", "merges.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tokenizer.model")
# tokenizer_config.json keys that say where the files were read from, not how they tokenize.
_WHERE_FROM = ("name_or_path", "is_local", "local_files_only", "_commit_hash", "tokenizer_file")


def tokenizer_fingerprint(model_dir: Path) -> str:
    """A hash of the tokenizer files in model_dir (tokenizer_config.json without the keys that
    only say where it was loaded from): models on one encoder share its tokenizer only when
    these are equal. Read from the files (a few MiB), not recorded at export: it holds for
    checkpoints older than it, and for files changed since."""
    h = hashlib.blake2b(digest_size=16)
    for name in TOKENIZER_FILES:
        path = Path(model_dir) / name
        if not path.is_file():
            continue
        data = path.read_bytes()
        if name == "tokenizer_config.json":
            config = {k: v for k, v in json.loads(data).items() if k not in _WHERE_FROM}
            data = json.dumps(config, sort_keys=True).encode()
        h.update(f"{name}|{len(data)}|".encode())
        h.update(data)
    return h.hexdigest()


def base_encoder_state(peft_encoder: nn.Module) -> dict[str, torch.Tensor]:
    """The unmerged base weights under a peft model, by the plain encoder's parameter names."""
    base = peft_encoder.get_base_model()
    return {k.replace(".base_layer.", "."): v for k, v in base.state_dict().items()
            if "lora_" not in k}


def export_info(encoder: nn.Module, method: str, out_dir: Path) -> dict | None:
    """adapt.json's `sharing` for the encoder as trained (a peft model for lora); lora also writes
    its adapter directory. None for methods whose encoder is the model's own."""
    if method == "head":
        return {"kind": "head", "encoder_fingerprint": fingerprint(encoder.state_dict())}
    if method == "lora" and hasattr(encoder, "get_base_model"):
        encoder.save_pretrained(str(out_dir / ADAPTER_DIR))
        return {"kind": "lora", "base_fingerprint": fingerprint(base_encoder_state(encoder)),
                "adapter": ADAPTER_DIR}
    return None


@dataclass
class LoraDelta:
    """One adapter: per target linear (its name in the encoder) A [r, in], B [out, r], and the
    scaling (lora_alpha / r) its delta is multiplied by."""

    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]
    scaling: float

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for pair in self.weights.values() for t in pair)

    def to(self, device: str) -> "LoraDelta":
        return LoraDelta({k: (a.to(device), b.to(device)) for k, (a, b) in self.weights.items()},
                         self.scaling)

    def merged(self, name: str) -> torch.Tensor:
        a, b = self.weights[name]
        return (b.float() @ a.float()) * self.scaling


def load_adapter(adapter_dir: Path) -> LoraDelta:
    """A peft adapter directory (LoRA, no rsLoRA/DoRA) as a LoraDelta."""
    cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    if cfg.get("use_rslora") or cfg.get("use_dora") or cfg.get("peft_type", "LORA") != "LORA":
        raise ValueError("only plain LoRA adapters are served on a shared encoder")
    parts: dict[str, dict[str, torch.Tensor]] = {}
    for key, t in load_file(str(adapter_dir / "adapter_model.safetensors")).items():
        name = key.removeprefix(_PEFT_PREFIX)
        for side in ("lora_A", "lora_B"):
            if f".{side}." in name:
                parts.setdefault(name.split(f".{side}.")[0], {})[side] = t
    weights = {name: (p["lora_A"], p["lora_B"]) for name, p in parts.items()}
    return LoraDelta(weights, cfg["lora_alpha"] / cfg["r"])


def unmerge(encoder: nn.Module, delta: LoraDelta) -> None:
    """Subtract the adapter from merged weights in place: the base encoder (up to rounding)."""
    modules = dict(encoder.named_modules())
    with torch.no_grad():
        for name in delta.weights:
            weight = modules[name].weight
            weight -= delta.merged(name).to(weight.device, weight.dtype)


def is_base_of(weights_file: Path, encoder: nn.Module, delta: LoraDelta,
               atol: float = 1e-4) -> bool:
    """Whether a LoRA checkpoint's merged encoder, less its adapter, is this encoder (up to the
    rounding of merging): every tensor read once from the file, none kept."""
    own = encoder.state_dict()
    with safe_open(str(weights_file), framework="pt") as st:
        names = [k for k in st.keys() if k.startswith("encoder.")]
        if sorted(k.removeprefix("encoder.") for k in names) != sorted(own):
            return False
        for key in names:
            name = key.removeprefix("encoder.")
            got = st.get_tensor(key)
            module = name.rsplit(".", 1)[0]
            if name.endswith(".weight") and module in delta.weights:
                got = got.float() - delta.merged(module).cpu()
            want = own[name].detach().cpu()
            if got.shape != want.shape or not torch.allclose(got.to(want.dtype), want, atol=atol):
                return False
    return True


class AdapterRouter:
    """Forward hooks on an encoder's linears that add each row group's LoRA delta to the shared
    output: with rows() active (per thread), one forward pass serves a batch whose rows belong to
    different adapters (rows of no adapter get the base output)."""

    def __init__(self, encoder: nn.Module):
        self._local = threading.local()
        for name, module in encoder.named_modules():
            if isinstance(module, nn.Linear):
                module.register_forward_hook(self._hook(name))

    @contextlib.contextmanager
    def rows(self, groups: list[tuple[slice, LoraDelta]]):
        """groups: (the batch rows, their adapter); rows of no group run the base encoder."""
        previous = getattr(self._local, "groups", None)
        self._local.groups = [(rows, d) for rows, d in groups if d is not None]
        try:
            yield
        finally:
            self._local.groups = previous

    def _hook(self, name: str):
        def hook(module, inputs, output):
            groups = getattr(self._local, "groups", None)
            if not groups:
                return None
            x, out = inputs[0], output.clone()
            for rows, delta in groups:
                pair = delta.weights.get(name)
                if pair is not None:
                    a, b = pair
                    xa = x[rows] @ a.to(x.dtype).T
                    out[rows] = out[rows] + (xa @ b.to(x.dtype).T) * delta.scaling
            return out
        return hook
