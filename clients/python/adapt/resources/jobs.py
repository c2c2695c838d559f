from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any, Iterator

import httpx

from adapt._http import HTTP
from adapt._sse import iter_sse
from adapt.errors import AdaptError, APIConnectionError, ServiceUnavailable
from adapt.pagination import Pager
from adapt.types import Checkpoint, Job, JobEvent, JobProgress, Metric

if TYPE_CHECKING:
    from adapt.client import Client

log = logging.getLogger("adapt")
TRANSIENT = (APIConnectionError, ServiceUnavailable)
# The server sends a keep-alive every half second: a minute of silence is a dead connection.
SSE_TIMEOUT = httpx.Timeout(30.0, read=60.0)


class _SSEUnavailable(Exception):
    """The events endpoint answered, but not with an event stream (an older server, a proxy)."""


class Jobs:
    def __init__(self, http: HTTP, client: Client):
        self._http, self._client = http, client

    def _job(self, body: dict) -> Job:
        job = Job.model_validate(body)
        job._client = self._client
        return job

    def create(self, base_model: str, training_dataset: str, *, method: str | None = None,
               hyperparameters: dict[str, Any] | None = None,
               validation_dataset: str | None = None, validation_split: float | None = None,
               early_stopping: dict[str, Any] | None = None,
               select_checkpoint_by: str | None = None, seed: int | None = None,
               suffix: str | None = None, metadata: dict[str, str] | None = None,
               idempotency_key: str | None = None) -> Job:
        """Start a fine-tune job (queued; a worker picks it up). Omitted values take the
        service's defaults; the job shows every resolved hyperparameter."""
        body = {k: v for k, v in {
            "base_model": base_model, "training_dataset": training_dataset, "method": method,
            "hyperparameters": hyperparameters, "validation_dataset": validation_dataset,
            "validation_split": validation_split, "early_stopping": early_stopping,
            "select_checkpoint_by": select_checkpoint_by, "seed": seed, "suffix": suffix,
            "metadata": metadata}.items() if v is not None}
        return self._job(self._http.json("POST", "/v1/jobs", json=body,
                                         idempotency_key=idempotency_key))

    def list(self, *, status: str | None = None, limit: int = 20,
             after: str | None = None) -> Pager[Job]:
        return Pager(lambda p: self._http.json("GET", "/v1/jobs", params=p), self._job,
                     {"limit": limit, "after": after, "status": status})

    def get(self, job_id: str) -> Job:
        return self._job(self._http.json("GET", f"/v1/jobs/{job_id}"))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (Conflict when it has finished)."""
        return self._job(self._http.json("POST", f"/v1/jobs/{job_id}/cancel"))

    def events(self, job_id: str, *, after: int = 0) -> list[JobEvent]:
        """The events logged so far after event id `after`, oldest first."""
        body = self._http.json("GET", f"/v1/jobs/{job_id}/events", params={"after": after})
        return [JobEvent.model_validate(e) for e in body["data"]]

    def metrics(self, job_id: str) -> list[Metric]:
        body = self._http.json("GET", f"/v1/jobs/{job_id}/metrics")
        return [Metric.model_validate(m) for m in body["data"]]

    def metrics_csv(self, job_id: str) -> str:
        return self._http.request("GET", f"/v1/jobs/{job_id}/metrics",
                                  params={"format": "csv"}).text

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        body = self._http.json("GET", f"/v1/jobs/{job_id}/checkpoints")
        return [Checkpoint.model_validate(c) for c in body["data"]]

    def wait(self, job_id: str, *, timeout: float | None = None,
             poll_interval: float = 1.0) -> Job:
        """Poll until the job has finished (succeeded, failed or cancelled); the final job.
        TimeoutError after `timeout` seconds; a service briefly down is waited out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        failures = 0
        while True:
            try:
                job = self.get(job_id)
                failures = 0
                if job.finished:
                    return job
            except TRANSIENT:
                failures += 1
                if failures > 5:
                    raise
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"job {job_id} has not finished after {timeout}s")
            time.sleep(poll_interval * (2 ** min(failures, 3)))

    def stream(self, job_id: str, *, after: int = 0, progress: bool = False,
               poll_interval: float = 1.0, max_retries: int = 5,
               ) -> Iterator[JobEvent | JobProgress]:
        """The job's events, oldest first, live until it has finished (then the iterator ends).

        Read from the server-sent event stream; a dropped connection is resumed with
        Last-Event-ID (no event is yielded twice); a server or proxy that does not stream is
        polled instead. With `progress=True`, JobProgress items (step, ETA, loss) come in between.
        """
        last, failures = after, 0
        while True:
            try:
                for item in self._sse(job_id, last, progress):
                    failures = 0
                    if isinstance(item, JobEvent):
                        last = item.id
                    yield item
            except _SSEUnavailable:
                yield from self._poll(job_id, last, progress, poll_interval, max_retries)
                return
            except TRANSIENT as exc:
                failures += 1
                if failures > max_retries:
                    raise
                log.info("event stream of %s dropped (%s); resuming after event %s",
                         job_id, exc, last)
                time.sleep(min(0.25 * 2 ** failures, 5.0))
                continue
            # The server closes the stream once the job has finished and every event was sent;
            # any other close (a proxy's idle timeout) is resumed where it stopped.
            if self.get(job_id).finished:
                yield from self.events(job_id, after=last)
                return

    def _sse(self, job_id: str, last: int, progress: bool) -> Iterator[JobEvent | JobProgress]:
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if last:
            headers["Last-Event-ID"] = str(last)
        try:
            with self._http.stream("GET", f"/v1/jobs/{job_id}/events", headers=headers,
                                   params={"after": last}, timeout=SSE_TIMEOUT) as response:
                if not response.headers.get("content-type", "").startswith("text/event-stream"):
                    raise _SSEUnavailable
                for message in iter_sse(response.iter_lines()):
                    if message.event == "progress":
                        if progress:
                            yield JobProgress.model_validate_json(message.data)
                        continue
                    event = JobEvent.model_validate_json(message.data)
                    if event.id > last:
                        last = event.id
                        yield event
        except AdaptError as exc:
            if exc.status in (406, 501):
                raise _SSEUnavailable from exc
            raise

    def _poll(self, job_id: str, last: int, progress: bool, interval: float,
              max_retries: int) -> Iterator[JobEvent | JobProgress]:
        """The JSON events endpoint, polled: the same events, `interval` seconds apart."""
        seen, failures = None, 0
        while True:
            try:
                job = self.get(job_id)
                events = self.events(job_id, after=last)
                failures = 0
            except TRANSIENT:
                failures += 1
                if failures > max_retries:
                    raise
                time.sleep(min(0.25 * 2 ** failures, 5.0))
                continue
            if progress and job.progress is not None and job.progress != seen:
                seen = job.progress
                yield job.progress
            for event in events:
                last = event.id
                yield event
            if job.finished and not events:
                return
            if not events:
                time.sleep(interval)
