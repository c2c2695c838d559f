"""A job's `resources` route it to the queue of its device class (`training` for jobs that run
anywhere, `training.cpu`, `training.gpu`, `training.gpu.N`); a job no worker class can take —
by the declared classes (ADAPT_WORKER_CLASSES) and the live workers' heartbeats — is a 422 at
creation, not a job waiting for ever. Lost messages are re-sent to the job's own queue."""
from datetime import timedelta

import pytest
from helpers import toy_csv
from sqlalchemy import update

from app.config import get_settings
from app.db import session_scope
from app.jobs import lifecycle
from app.models import Job, Worker
from app.models.base import utcnow
from workers.heartbeat import Heartbeat


@pytest.fixture(scope="module")
def dataset_id(client):
    return client.post("/v1/datasets", files={"file": ("r.csv", toy_csv(20))}).json()["id"]


@pytest.fixture
def sent(monkeypatch):
    """{job id: the queue its task went to}; nothing consumes them."""
    out = {}
    monkeypatch.setattr("app.queue.send_training",
                        lambda job_id, countdown=0, queue="training": out.update({job_id: queue}))
    return out


@pytest.fixture
def declared(monkeypatch):
    """Set ADAPT_WORKER_CLASSES for the test."""
    settings = get_settings()

    def declare(value: str) -> None:
        monkeypatch.setattr(settings, "worker_classes", value)

    return declare


@pytest.fixture
def create(client, dataset_id):
    made = []

    def create(resources=None):
        body = {"base_model": "tiny-bert", "training_dataset": dataset_id}
        if resources is not None:
            body["resources"] = resources
        res = client.post("/v1/jobs", json=body)
        if res.status_code == 201:
            made.append(res.json()["id"])
        return res

    yield create
    for job_id in made:
        client.post(f"/v1/jobs/{job_id}/cancel")


def test_resources_default_to_anywhere_and_route_by_device(create, sent, declared):
    declared("cpu,gpu:2")
    job = create().json()
    assert job["resources"] == {"device": "auto", "gpus": 0}
    routed = {}
    for resources, shown, queue in [
            ({"device": "auto"}, {"device": "auto", "gpus": 0}, "training"),
            ({"device": "cpu"}, {"device": "cpu", "gpus": 0}, "training.cpu"),
            ({"device": "gpu"}, {"device": "gpu", "gpus": 1}, "training.gpu"),
            ({"gpus": 2}, {"device": "gpu", "gpus": 2}, "training.gpu.2")]:
        res = create(resources)
        assert res.status_code == 201, res.text
        assert res.json()["resources"] == shown
        routed[res.json()["id"]] = queue
    assert sent == {job["id"]: "training", **routed}


def test_a_multi_gpu_job_trains_one_process_per_gpu(client, dataset_id, sent, declared):
    declared("gpu:4")
    body = {"base_model": "tiny-bert", "training_dataset": dataset_id,
            "resources": {"device": "gpu", "gpus": 2}}
    res = client.post("/v1/jobs", json=body)
    assert res.status_code == 201, res.text
    assert res.json()["hyperparameters"]["processes"] == 2
    client.post(f"/v1/jobs/{res.json()['id']}/cancel")
    res = client.post("/v1/jobs", json={**body, "hyperparameters": {"processes": 3}})
    assert res.status_code == 422
    error = res.json()["error"]
    assert error["param"] == "hyperparameters.processes" and error["code"] == "too_many_processes"
    assert "exceeds the job's GPUs (2)" in error["message"]
    assert len(sent) == 1


@pytest.mark.parametrize("resources", [
    {"device": "cpu", "gpus": 1}, {"device": "gpu", "gpus": 0}, {"device": "tpu"},
    {"gpus": -1}, {"gpus": "1"}, {"gpus": 1.5}, {"device": "gpu", "memory": "80G"}, ["gpu"]])
def test_inconsistent_or_unknown_resources_are_refused(create, sent, resources):
    res = create(resources)
    assert res.status_code == 422, res.text
    assert res.json()["error"]["param"].startswith("resources")
    assert not sent


def test_a_job_no_declared_worker_class_can_take_is_a_422(create, sent, declared):
    declared("cpu")  # and no live GPU worker in the tests
    res = create({"device": "gpu", "gpus": 1})
    assert res.status_code == 422
    error = res.json()["error"]
    assert error["code"] == "no_worker_for_device" and error["param"] == "resources.device"
    assert "No worker takes gpu jobs" in error["message"] and "cpu" in error["message"]
    declared("cpu,gpu:1")
    assert create({"device": "gpu"}).status_code == 201
    res = create({"device": "gpu", "gpus": 2})
    assert res.status_code == 422
    error = res.json()["error"]
    assert error["code"] == "too_many_gpus" and error["param"] == "resources.gpus"
    assert error["message"] == "The job asks for 2 GPUs but no worker holds more than 1."
    assert create({"device": "auto"}).status_code == 201  # every worker takes it
    assert len(sent) == 2


def test_live_workers_count_as_capacity_until_they_fall_silent(create, sent, declared):
    declared("cpu")
    gpu_worker = Heartbeat(5.0, "gpu-host:1", device="gpu", gpus=4)
    gpu_worker.beat()
    try:
        assert create({"device": "gpu", "gpus": 4}).status_code == 201
        assert create({"device": "gpu", "gpus": 5}).json()["error"]["code"] == "too_many_gpus"
        with session_scope() as s:  # silent for longer than 3 heartbeat intervals
            s.execute(update(Worker).where(Worker.id == "gpu-host:1").values(
                heartbeat_at=utcnow() - timedelta(seconds=60)))
        assert create({"device": "gpu"}).json()["error"]["code"] == "no_worker_for_device"
    finally:
        gpu_worker.stop()
    assert list(sent.values()) == ["training.gpu.4"]


def test_with_nothing_declared_and_no_worker_heard_from_jobs_are_accepted(
        create, sent, declared, monkeypatch):
    declared("")
    monkeypatch.setattr("app.jobs.repository.live_worker_classes", lambda *a: {})
    res = create({"device": "gpu", "gpus": 8})  # the capacity is unknown: it waits for a worker
    assert res.status_code == 201 and res.json()["queue"]["workers"] >= 0


def test_a_lost_message_is_sent_again_to_the_jobs_own_queue(create, sent, declared, client,
                                                             monkeypatch):
    declared("cpu,gpu:1")
    asked = []  # the broker holds no message (other tests' leftovers would blur a real count)
    monkeypatch.setattr("app.queue.queue_sizes",
                        lambda names: asked.extend(names) or dict.fromkeys(names, 0))
    gpu_job, old_job = create({"device": "gpu"}).json()["id"], create().json()["id"]
    with session_scope() as s:  # one from before resources existed
        s.execute(update(Job).where(Job.id == old_job).values(resources=None))
    assert client.get(f"/v1/jobs/{old_job}").json()["resources"] == {"device": "auto", "gpus": 0}
    # a minute on, in this process only: both were queued long enough ago (the session's
    # worker, on the real clock, sees them young and does not re-send them itself)
    later = utcnow() + timedelta(minutes=1)
    monkeypatch.setattr(lifecycle, "utcnow", lambda: later)
    lost = lifecycle.queued_without_message()
    assert lost[gpu_job] == "training.gpu" and lost[old_job] == "training"
    assert {"training", "training.gpu"} <= set(asked)  # each queue counted on its own
