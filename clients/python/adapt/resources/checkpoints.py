from __future__ import annotations

from pathlib import Path

from adapt._http import HTTP


class Checkpoints:
    def __init__(self, http: HTTP):
        self._http = http

    def download(self, checkpoint_id: str, path: str | Path) -> Path:
        """Write the checkpoint's ZIP (a directory transformers loads as it is) to `path`,
        streamed; a directory `path` gets `<checkpoint id>.zip` inside it."""
        path = Path(path)
        if path.is_dir():
            path = path / f"{checkpoint_id}.zip"
        partial = path.with_name(path.name + ".part")
        with self._http.stream("GET", f"/v1/checkpoints/{checkpoint_id}/content") as response:
            with partial.open("wb") as out:
                for chunk in response.iter_bytes(1 << 20):
                    out.write(chunk)
        partial.replace(path)
        return path
