"""adapt-serve's CPU worker shares the cores with its model server: between training steps it
waits while the server holds prediction requests (app.predict_activity), at most
ADAPT_WORKER_YIELD_MAX_PAUSE_S per step, and says so in a job event."""
import os
import threading
import time

import pytest
from helpers import events_of, toy_csv, wait_for_job

from app.ml.callbacks import Control, TrainState
from app.predict_activity import PredictActivity
from workers import shutdown
from workers.callbacks import YieldToPredictions


def _step_s(callback: YieldToPredictions) -> float:
    t0 = time.monotonic()
    callback.on_step_end(TrainState(), Control())
    return time.monotonic() - t0


def test_a_step_waits_until_the_held_requests_end_and_never_longer_than_the_cap(tmp_path):
    server = PredictActivity(tmp_path / "a", owner=True)
    seen_by_worker = PredictActivity.reader(tmp_path / "a")
    callback = YieldToPredictions("job_x", seen_by_worker, max_pause_s=2.0)
    # (bounds far from the pauses they tell apart: a busy CI machine delays a thread by tens of ms)
    assert _step_s(callback) < 0.25 and callback.steps == 0  # nothing held: no pause

    server.begin()
    threading.Timer(0.4, server.end).start()
    assert 0.4 <= _step_s(callback) < 1.5  # until the request ended (and its grace)
    assert callback.steps == 1

    server.begin()  # held on, as under a steady stream: training still goes on
    callback.max_pause_s = 0.6
    assert 0.6 <= _step_s(callback) < 1.5
    shutdown.requested.set()
    try:  # a worker told to stop does not wait for predictions to checkpoint and exit
        assert _step_s(callback) < 0.25
    finally:
        shutdown.requested.clear()
    server.end()
    assert callback.steps == 3 and callback.yielded_s >= 1.0


def test_a_restarted_server_clears_what_a_killed_one_held(tmp_path):
    killed = PredictActivity(tmp_path / "a", owner=True)
    killed.begin(3)
    worker_view = PredictActivity.reader(tmp_path / "a")
    assert worker_view.read()[0] == 3
    PredictActivity(tmp_path / "a", owner=True)  # the same file, mapped by the worker still
    assert worker_view.read()[0] == 0 and not worker_view.busy(0.05)
    assert PredictActivity.reader(tmp_path / "absent") is None


@pytest.mark.usefixtures("worker")
def test_a_job_pauses_while_predictions_are_held_and_finishes(client):
    server = PredictActivity(os.environ["ADAPT_PREDICT_ACTIVITY_FILE"], owner=True)
    ds = client.post("/v1/datasets", files={"file": ("toy.csv", toy_csv(64))}).json()
    server.begin()  # one request held through the whole job
    try:
        res = client.post("/v1/jobs", json={
            "base_model": "tiny-bert", "training_dataset": ds["id"], "method": "full",
            "hyperparameters": {"epochs": 1, "batch_size": 16}, "validation_split": 0.25})
        assert res.status_code == 201, res.text
        job = wait_for_job(client, res.json()["id"])
    finally:
        server.end()
    assert job["status"] == "succeeded", job["error"]
    steps = job["progress"]["total_steps"]
    [paused] = [e for e in events_of(client, job["id"]) if e["message"].startswith("paused")]
    assert paused["data"]["steps"] == steps  # before every step's successor (and after the last)
    assert paused["data"]["yielded_s"] >= 0.5 * steps * 0.9
    # the pauses are not training time: the job's own rate leaves them out (48 examples)
    assert job["progress"]["samples_per_second"] > 48 / paused["data"]["yielded_s"]
