from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, AsyncIterator, Iterator

import httpx

from adapt._http import Call
from adapt._sse import ServerEvent, SSEDecoder, iter_sse
from adapt.errors import AdaptError, APIConnectionError, ServiceUnavailable
from adapt.pagination import Pager
from adapt.resources._upload import data_of
from adapt.types import Checkpoint, Job, JobEvent, JobProgress, Metric

if TYPE_CHECKING:
    from adapt.client import Client

log = logging.getLogger("adapt")
TRANSIENT = (APIConnectionError, ServiceUnavailable)
# The server sends a keep-alive every half second: a minute of silence is a dead connection.
SSE_TIMEOUT = httpx.Timeout(30.0, read=60.0)


class _SSEUnavailable(Exception):
    """The events endpoint answered, but not with an event stream (an older server, a proxy)."""


class _Failures:
    """Consecutive transient failures of a long-running read: the pause before the next try, or
    the error once there were more than `limit`."""

    def __init__(self, limit: int):
        self.limit, self.count = limit, 0

    def ok(self) -> None:
        self.count = 0

    def pause(self, exc: Exception, cap: float = 5.0) -> float:
        self.count += 1
        if self.count > self.limit:
            raise exc
        return min(0.25 * 2 ** self.count, cap)


class _Waiting:
    """Polling a job until it has finished: `pause` is the wait before the next look (0 before
    the first, None once `job` is the final one). TimeoutError after `timeout` seconds; up to 5
    transient failures in a row are waited out, a little longer each time."""

    def __init__(self, job_id: str, timeout: float | None, interval: float, noun: str = "job"):
        self.job_id, self.timeout, self.interval, self.noun = job_id, timeout, interval, noun
        self.at = None if timeout is None else time.monotonic() + timeout
        self.failures, self.job, self.pause = _Failures(5), None, 0.0

    def saw(self, job: Job) -> None:
        self.failures.ok()
        self.job = job
        self._next(None if job.finished else self.interval)

    def failed(self, exc: Exception) -> None:
        self.failures.pause(exc)
        self._next(self.interval * 2 ** min(self.failures.count, 3))

    def _next(self, pause: float | None) -> None:
        if pause is not None and self.at is not None and time.monotonic() > self.at:
            raise TimeoutError(f"{self.noun} {self.job_id} has not finished after {self.timeout}s")
        self.pause = pause


def _sse_request(job_id: str, last: int) -> dict[str, Any]:
    headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
    if last:
        headers["Last-Event-ID"] = str(last)
    return {"method": "GET", "path": f"/v1/jobs/{job_id}/events", "headers": headers,
            "params": {"after": last}, "timeout": SSE_TIMEOUT}


def _check_stream(response: httpx.Response) -> None:
    if not response.headers.get("content-type", "").startswith("text/event-stream"):
        raise _SSEUnavailable


def _sse_item(message: ServerEvent, last: int, progress: bool) -> JobEvent | JobProgress | None:
    """What a server-sent message yields: progress (when asked for) or an event not seen yet."""
    if message.event == "progress":
        return JobProgress.model_validate_json(message.data) if progress else None
    event = JobEvent.model_validate_json(message.data)
    return event if event.id > last else None


def _unavailable(exc: AdaptError) -> None:
    if exc.status in (406, 501):
        raise _SSEUnavailable from exc
    raise exc


class _Polling:
    """The JSON events endpoint read again and again: what each poll yields (the job's progress
    when it moved and was asked for, then the new events), and whether to stop or pause."""

    def __init__(self, last: int, progress: bool):
        self.last, self.progress, self.seen = last, progress, None
        self.finished = self.idle = False

    def take(self, job: Job, events: list[JobEvent]) -> list[JobEvent | JobProgress]:
        out: list[JobEvent | JobProgress] = []
        if self.progress and job.progress is not None and job.progress != self.seen:
            self.seen = job.progress
            out.append(job.progress)
        if events:
            self.last = events[-1].id
        self.finished, self.idle = job.finished and not events, not events
        return out + list(events)


class Jobs:
    def __init__(self, http, client: Client):
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
               resources: dict[str, Any] | None = None, teacher: str | None = None,
               transfer_dataset: str | None = None, dry_run: bool = False, idempotency_key: str | None = None) -> Job:
        """Start a fine-tune job (queued; a worker picks it up). Omitted values take the
        service's defaults; the job shows every resolved hyperparameter. `resources`, e.g.
        {"device": "gpu", "gpus": 1}, says which workers may take it (default: any).
        method="distill" with `teacher` (a model id) trains a student on the teacher's logits
        (hyperparameters temperature, alpha, student_layers); `transfer_dataset` (text) adds a
        dataset's texts, labelled by the teacher alone (its own labels are not read). Safe to retry: the request carries
        an Idempotency-Key (`idempotency_key`, or one made for this call). dry_run=True: a
        pre-flight only — the job succeeds with `preflight` (peak memory, the largest batch size
        that fits, seconds per epoch and in total) and makes no model; hyperparameters
        {"batch_size": "auto"} lets a real job use the pre-flight's answer."""
        body = {k: v for k, v in {
            "base_model": base_model, "training_dataset": training_dataset, "method": method,
            "hyperparameters": hyperparameters, "validation_dataset": validation_dataset,
            "validation_split": validation_split, "early_stopping": early_stopping,
            "select_checkpoint_by": select_checkpoint_by, "seed": seed, "suffix": suffix,
            "metadata": metadata, "resources": resources, "teacher": teacher,
            "transfer_dataset": transfer_dataset, "dry_run": dry_run or None}.items() if v is not None}
        return self._http.call(Call("POST", "/v1/jobs", json=body, create=True,
                                    idempotency_key=idempotency_key, into=self._job))

    def list(self, *, status: str | None = None, limit: int = 20,
             after: str | None = None) -> Pager[Job]:
        return self._http.pager("/v1/jobs", self._job,
                                {"limit": limit, "after": after, "status": status})

    def get(self, job_id: str) -> Job:
        return self._http.call(Call("GET", f"/v1/jobs/{job_id}", into=self._job))

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued or running job (Conflict when it has finished)."""
        return self._http.call(Call("POST", f"/v1/jobs/{job_id}/cancel", into=self._job))

    def events(self, job_id: str, *, after: int = 0) -> list[JobEvent]:
        """The events logged so far after event id `after`, oldest first."""
        return self._http.call(Call("GET", f"/v1/jobs/{job_id}/events", params={"after": after},
                                    into=data_of(JobEvent.model_validate)))

    def metrics(self, job_id: str) -> list[Metric]:
        """Every value logged (train loss per step, validation metrics per epoch)."""
        return self._http.call(Call("GET", f"/v1/jobs/{job_id}/metrics",
                                    into=data_of(Metric.model_validate)))

    def metrics_csv(self, job_id: str) -> str:
        return self._http.call(Call("GET", f"/v1/jobs/{job_id}/metrics",
                                    params={"format": "csv"}, text=True))

    def checkpoints(self, job_id: str) -> list[Checkpoint]:
        return self._http.call(Call("GET", f"/v1/jobs/{job_id}/checkpoints",
                                    into=data_of(Checkpoint.model_validate)))

    def wait(self, job_id: str, *, timeout: float | None = None,
             poll_interval: float = 1.0) -> Job:
        """Poll until the job has finished (succeeded, failed or cancelled); the final job.
        TimeoutError after `timeout` seconds; a service briefly down is waited out."""
        waiting = _Waiting(job_id, timeout, poll_interval)
        while waiting.pause is not None:
            time.sleep(waiting.pause)
            try:
                waiting.saw(self.get(job_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job

    def stream(self, job_id: str, *, after: int = 0, progress: bool = False,
               poll_interval: float = 1.0, max_retries: int = 5,
               ) -> Iterator[JobEvent | JobProgress]:
        """The job's events, oldest first, live until it has finished (then the iterator ends).

        Read from the server-sent event stream; a dropped connection is resumed with
        Last-Event-ID (no event is yielded twice); a server or proxy that does not stream is
        polled instead. With `progress=True`, JobProgress items (step, ETA, loss) come in between.
        """
        last, failures = after, _Failures(max_retries)
        while True:
            try:
                for item in self._sse(job_id, last, progress):
                    failures.ok()
                    if isinstance(item, JobEvent):
                        last = item.id
                    yield item
            except _SSEUnavailable:
                yield from self._poll(job_id, last, progress, poll_interval, max_retries)
                return
            except TRANSIENT as exc:
                pause = failures.pause(exc)
                log.info("event stream of %s dropped (%s); resuming after event %s",
                         job_id, exc, last)
                time.sleep(pause)
                continue
            # The server closes the stream once the job has finished and every event was sent;
            # any other close (a proxy's idle timeout) is resumed where it stopped.
            if self.get(job_id).finished:
                yield from self.events(job_id, after=last)
                return

    def _sse(self, job_id: str, last: int, progress: bool) -> Iterator[JobEvent | JobProgress]:
        request = _sse_request(job_id, last)
        try:
            with self._http.stream(request.pop("method"), request.pop("path"),
                                   **request) as response:
                _check_stream(response)
                for message in iter_sse(response.iter_lines()):
                    if (item := _sse_item(message, last, progress)) is not None:
                        last = item.id if isinstance(item, JobEvent) else last
                        yield item
        except AdaptError as exc:
            _unavailable(exc)

    def _poll(self, job_id: str, last: int, progress: bool, interval: float,
              max_retries: int) -> Iterator[JobEvent | JobProgress]:
        """The JSON events endpoint, polled: the same events, `interval` seconds apart."""
        polling, failures = _Polling(last, progress), _Failures(max_retries)
        while not polling.finished:
            try:
                job = self.get(job_id)
                items = polling.take(job, self.events(job_id, after=polling.last))
                failures.ok()
            except TRANSIENT as exc:
                time.sleep(failures.pause(exc))
                continue
            yield from items
            if polling.idle and not polling.finished:
                time.sleep(interval)


class AsyncJobs(Jobs):
    """The same operations to await; `stream` is an async iterator."""

    async def wait(self, job_id: str, *, timeout: float | None = None,
                   poll_interval: float = 1.0) -> Job:
        waiting = _Waiting(job_id, timeout, poll_interval)
        while waiting.pause is not None:
            await asyncio.sleep(waiting.pause)
            try:
                waiting.saw(await self.get(job_id))
            except TRANSIENT as exc:
                waiting.failed(exc)
        return waiting.job

    async def stream(self, job_id: str, *, after: int = 0, progress: bool = False,
                     poll_interval: float = 1.0, max_retries: int = 5,
                     ) -> AsyncIterator[JobEvent | JobProgress]:
        last, failures = after, _Failures(max_retries)
        while True:
            try:
                async for item in self._sse(job_id, last, progress):
                    failures.ok()
                    last = item.id if isinstance(item, JobEvent) else last
                    yield item
            except _SSEUnavailable:
                async for item in self._poll(job_id, last, progress, poll_interval,
                                             max_retries):
                    yield item
                return
            except TRANSIENT as exc:
                await asyncio.sleep(failures.pause(exc))
                continue
            if (await self.get(job_id)).finished:
                for event in await self.events(job_id, after=last):
                    yield event
                return

    async def _sse(self, job_id: str, last: int,
                   progress: bool) -> AsyncIterator[JobEvent | JobProgress]:
        request, decoder = _sse_request(job_id, last), SSEDecoder()
        try:
            async with self._http.stream(request.pop("method"), request.pop("path"),
                                         **request) as response:
                _check_stream(response)
                async for line in response.aiter_lines():
                    message = decoder.feed(line)
                    item = None if message is None else _sse_item(message, last, progress)
                    if item is not None:
                        last = item.id if isinstance(item, JobEvent) else last
                        yield item
        except AdaptError as exc:
            _unavailable(exc)

    async def _poll(self, job_id: str, last: int, progress: bool, interval: float,
                    max_retries: int) -> AsyncIterator[JobEvent | JobProgress]:
        polling, failures = _Polling(last, progress), _Failures(max_retries)
        while not polling.finished:
            try:
                job = await self.get(job_id)
                items = polling.take(job, await self.events(job_id, after=polling.last))
                failures.ok()
            except TRANSIENT as exc:
                await asyncio.sleep(failures.pause(exc))
                continue
            for item in items:
                yield item
            if polling.idle and not polling.finished:
                await asyncio.sleep(interval)
