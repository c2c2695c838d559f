"""Image datasets: a ZIP with one folder per class (optionally inside one top folder).

Nothing is ever extracted: members are read from the archive by name. Names are still checked as
if they were (no absolute paths, no `..`, no symlinks), counts and sizes are capped before any
byte is decompressed, and every image is decoded once, so a corrupt member is named in the 422.
"""
import stat
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from app.datasets.parsing import DatasetInvalid

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
MAX_REPORTED = 20


@dataclass
class ZipLimits:
    max_members: int = 200_000
    max_total_bytes: int = 8 << 30       # uncompressed, all members
    max_member_bytes: int = 64 << 20     # uncompressed, one image
    max_ratio: float = 200.0             # uncompressed / compressed, per member


@dataclass
class ImageSummary:
    members: list[tuple[str, str]] = field(default_factory=list)  # (member name, label)
    class_counts: Counter = field(default_factory=Counter)


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _unsafe(name: str) -> str | None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        return "absolute path"
    if "\\" in name:
        return "backslash in path"
    if any(part == ".." for part in PurePosixPath(name).parts):
        return "path escapes the archive ('..')"
    return None


def _skipped(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return name.endswith("/") or any(p.startswith((".", "__MACOSX")) for p in parts)


def _layout(names: list[str]) -> int:
    """Depth of the class folder: 0 for `cls/x.png`, 1 for `top/cls/x.png`."""
    tops = {PurePosixPath(n).parts[0] for n in names}
    depths = {len(PurePosixPath(n).parts) for n in names}
    if len(tops) == 1 and depths == {3}:
        return 1
    if depths == {2}:
        return 0
    raise DatasetInvalid("The ZIP must hold one folder per class (cat/001.jpg), optionally inside "
                         "a single top folder (pets/cat/001.jpg).",
                         [{"member": n, "message": "not in a class folder"}
                          for n in names if len(PurePosixPath(n).parts) not in (2, 3)][:20])


def inspect_zip(path: Path, limits: ZipLimits | None = None, decode=None) -> ImageSummary:
    """Validate an image ZIP without extracting it; raise DatasetInvalid naming bad members."""
    limits = limits or ZipLimits()
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetInvalid(f"The file is not a readable ZIP archive ({exc}).") from None
    with zf:
        infos = zf.infolist()
        if len(infos) > limits.max_members:
            raise DatasetInvalid(f"The ZIP has {len(infos)} members; at most "
                                 f"{limits.max_members}.")
        errors, images, total = [], [], 0
        for info in infos:
            problem = _unsafe(info.filename) or ("symbolic link" if _is_symlink(info) else None)
            if problem:
                errors.append({"member": info.filename, "message": problem})
                continue
            if _skipped(info.filename):
                continue
            if PurePosixPath(info.filename).suffix.lower() not in IMAGE_EXTENSIONS:
                errors.append({"member": info.filename, "message": "not an image file"})
                continue
            total += info.file_size
            if info.file_size > limits.max_member_bytes or total > limits.max_total_bytes:
                raise DatasetInvalid("The ZIP expands to more than the limit "
                                     f"({limits.max_total_bytes} bytes in all, "
                                     f"{limits.max_member_bytes} a member).",
                                     [{"member": info.filename, "message": "too large"}])
            if info.compress_size and info.file_size / info.compress_size > limits.max_ratio:
                raise DatasetInvalid("The ZIP looks like a decompression bomb.",
                                     [{"member": info.filename, "message": "compression ratio "
                                       f"{info.file_size / info.compress_size:.0f}:1"}])
            images.append(info)
        if errors:
            raise DatasetInvalid(f"{len(errors)} member(s) are not allowed; the first is "
                                 f"{errors[0]['member']!r}: {errors[0]['message']}.",
                                 errors[:MAX_REPORTED])
        if not images:
            raise DatasetInvalid("The ZIP holds no images.")
        depth = _layout([i.filename for i in images])
        summary = ImageSummary()
        for info in images:
            label = PurePosixPath(info.filename).parts[depth]
            if decode is not None:
                try:
                    with zf.open(info) as f:
                        decode(f.read(limits.max_member_bytes + 1))
                except (ValueError, zipfile.BadZipFile, OSError, EOFError) as exc:
                    errors.append({"member": info.filename, "message": str(exc)[:200]})
                    continue
            summary.members.append((info.filename, label))
            summary.class_counts[label] += 1
        if errors:
            raise DatasetInvalid(f"{len(errors)} image(s) could not be decoded; the first is "
                                 f"{errors[0]['member']!r}: {errors[0]['message']}.",
                                 errors[:MAX_REPORTED])
    if len(summary.class_counts) < 2:
        raise DatasetInvalid(f"Every image is in the class {next(iter(summary.class_counts))!r}: "
                             "classification needs at least 2 class folders.")
    return summary

