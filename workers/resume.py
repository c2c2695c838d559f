"""Where a job's resume checkpoints live, so that any worker can continue a job another one
started. Local storage: written in place under the data dir (the storage itself). Object
storage: written to the attempt's work dir, and each one uploaded before it counts as saved
(state.json last: its presence marks a complete upload); a new attempt, on any host, downloads
the newest complete one first."""
from pathlib import Path

from app.ml import checkpointing
from app.storage import Storage

STATE = "state.json"


class ResumeCheckpoints:
    def __init__(self, storage: Storage, tenant: str, job_id: str, work_dir: Path):
        self.storage, self.key = storage, f"jobs/{tenant}/{job_id}/resume"
        self.dir = work_dir / "resume" if storage.remote else storage.local_path(self.key)

    def latest(self) -> Path | None:
        """The newest complete resume checkpoint (object storage: downloaded into self.dir)."""
        if self.storage.remote:
            names = self.storage.list(self.key)
            done = sorted(n.split("/")[0] for n in names if n.startswith(checkpointing.PREFIX)
                          and n.endswith(f"/{STATE}"))
            if done:
                self.storage.download(f"{self.key}/{done[-1]}", self.dir / done[-1])
        return checkpointing.latest(self.dir)

    def publish(self, path: Path) -> None:
        """Make the checkpoint just written at `path` durable; those older than the oldest the
        recipe kept locally go from the store too (never newer ones: an attempt that lost its
        lease and has not noticed yet must not remove what the new attempt saved)."""
        if not self.storage.remote:
            return  # already in storage
        self.storage.upload_tree(f"{self.key}/{path.name}", path, last=STATE)
        oldest = min(p.name for p in self.dir.iterdir() if p.name.startswith(checkpointing.PREFIX))
        stale = {n.split("/")[0] for n in self.storage.list(self.key)
                 if n.startswith(checkpointing.PREFIX) and n.split("/")[0] < oldest}
        for name in sorted(stale):
            self.storage.delete(f"{self.key}/{name}")
