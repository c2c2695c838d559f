from __future__ import annotations

from pathlib import Path


def _target(checkpoint_id: str, path: str | Path) -> tuple[Path, Path]:
    """The file to write (a directory gets `<checkpoint id>.zip`) and its partial name."""
    path = Path(path)
    if path.is_dir():
        path = path / f"{checkpoint_id}.zip"
    return path, path.with_name(path.name + ".part")


def _content(checkpoint_id: str) -> str:
    return f"/v1/checkpoints/{checkpoint_id}/content"


class Checkpoints:
    def __init__(self, http):
        self._http = http

    def download(self, checkpoint_id: str, path: str | Path) -> Path:
        """Write the checkpoint's ZIP (a directory transformers loads as it is) to `path`,
        streamed; a directory `path` gets `<checkpoint id>.zip` inside it."""
        path, partial = _target(checkpoint_id, path)
        with self._http.stream("GET", _content(checkpoint_id)) as response:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
        partial.replace(path)
        return path


class AsyncCheckpoints(Checkpoints):
    async def download(self, checkpoint_id: str, path: str | Path) -> Path:
        path, partial = _target(checkpoint_id, path)
        async with self._http.stream("GET", _content(checkpoint_id)) as response:
            with partial.open("wb") as out:
                async for chunk in response.aiter_bytes(1 << 20):
                    out.write(chunk)
        partial.replace(path)
        return path
