from __future__ import annotations

from pathlib import Path


def _target(object_id: str, path: str | Path) -> tuple[Path, Path]:
    """The file to write (a directory gets `<object id>.zip`) and its partial name."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{object_id}.zip"
    return path, path.with_name(path.name + ".part")


def save_zip(http, url: str, object_id: str, path: str | Path) -> Path:
    """Stream the ZIP at `url` to `path` (written under a partial name, then renamed)."""
    path, partial = _target(object_id, path)
    with http.stream("GET", url) as response:
        with partial.open("wb") as out:
            for chunk in response.iter_bytes(1 << 20):
                out.write(chunk)
    partial.replace(path)
    return path


async def asave_zip(http, url: str, object_id: str, path: str | Path) -> Path:
    """`save_zip` for the async client."""
    path, partial = _target(object_id, path)
    async with http.stream("GET", url) as response:
        with partial.open("wb") as out:
            async for chunk in response.aiter_bytes(1 << 20):
                out.write(chunk)
    partial.replace(path)
    return path


def _content(checkpoint_id: str) -> str:
    return f"/v1/checkpoints/{checkpoint_id}/content"


class Checkpoints:
    def __init__(self, http):
        self._http = http

    def download(self, checkpoint_id: str, path: str | Path) -> Path:
        """Write the checkpoint's ZIP (a directory transformers loads as it is) to `path`,
        streamed; a directory `path` gets `<checkpoint id>.zip` inside it."""
        return save_zip(self._http, _content(checkpoint_id), checkpoint_id, path)


class AsyncCheckpoints(Checkpoints):
    async def download(self, checkpoint_id: str, path: str | Path) -> Path:
        return await asave_zip(self._http, _content(checkpoint_id), checkpoint_id, path)
