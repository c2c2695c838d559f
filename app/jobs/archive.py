"""Checkpoint directories packed as ZIP files for download."""
import shutil
import zipfile
from pathlib import Path


def zip_directory(src: Path, staging: Path) -> Path:
    """A ZIP of src's files (stored, not deflated: safetensors barely compress)."""
    out = staging / f"{src.name}.zip"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as zf:
        for path in sorted(src.rglob("*")):
            if path.is_file():
                zf.write(path, path.relative_to(src).as_posix())
    return _cleanup_parent(out)


def _cleanup_parent(path: Path) -> Path:
    # The staging dir holds only this file; move the file up so one unlink removes everything.
    dest = path.parent.parent / f"{path.parent.name}-{path.name}"
    shutil.move(path, dest)
    path.parent.rmdir()
    return dest
