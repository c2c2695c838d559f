"""The dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real API
process and a real worker: ask for the key, upload a dataset, start a job, watch it succeed with
its curves and confusion matrix drawn, and predict, all through the UI."""
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import httpx
import pytest
from helpers import toy_csv

from app.db import session_scope
from app.keys import service as keys

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# Debian's Chromium on a closed network: no background connections, no GPU, and (as root in CI)
# no sandbox. Playwright adds --headless; the profile is a fresh --user-data-dir per module.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
EPOCHS = 3
LONG = 180_000  # ms: the most a tiny-bert job on 2 shared CPU cores may take to finish


def screenshot_path(name: str) -> Path:
    folder = Path(os.environ.get("ADAPT_SCREENSHOT_DIR") or ROOT / "tests" / "dashboard" / "artifacts")
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def spawn_api(extra_env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """`uvicorn app.main:app` in its own process on a free loopback port; returns (process, URL)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", "app.main:app", "--port", str(port),
                             "--log-level", "warning"], cwd=ROOT, env={**os.environ, **extra_env})
    return proc, f"http://127.0.0.1:{port}"


def wait_until_up(proc: subprocess.Popen, base: str) -> None:
    deadline = time.time() + 90
    while proc.poll() is None and time.time() < deadline:
        try:
            if httpx.get(f"{base}/healthz").status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError(f"the API did not start on {base}")


@pytest.fixture(scope="module")
def servers(environment):
    """Two API processes on the same database, started side by side: one that requires keys,
    one on the keyless default."""
    started = [spawn_api({"ADAPT_AUTH": "on"}), spawn_api({"ADAPT_AUTH": "off"})]
    try:
        for proc, base in started:
            wait_until_up(proc, base)
        yield {"auth": started[0][1], "open": started[1][1]}
    finally:
        for proc, _ in started:
            proc.terminate()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    """Headless Debian Chromium with a fresh profile. A missing Chromium fails (never skips)."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: the dashboard tests drive Debian's Chromium; install "
                    "it with `apt-get install -y chromium` (.ci/run does). Playwright's own browser "
                    "download is not used.")
    from playwright.sync_api import expect, sync_playwright

    profile = tempfile.mkdtemp(prefix="adapt-chromium-")
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            profile, executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS,
            viewport={"width": 1280, "height": 1000})
        context.set_default_timeout(30_000)
        expect.set_options(timeout=30_000)  # a first /v1/base-models may take seconds here
        yield context
        context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser):
    """A new tab; uncaught errors in the page fail the test."""
    tab = browser.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    tab.close()
    assert not errors, f"uncaught errors in the page: {errors}"


def test_train_and_predict_through_the_dashboard(servers, worker, page, capsys):
    from playwright.sync_api import expect

    base = servers["auth"]
    with session_scope() as s:
        _, key = keys.create(s, "dash", "dashboard-test")
    auth = {"Authorization": f"Bearer {key}"}

    # The API wants a key: the page asks once, says when it is wrong, and keeps the right one.
    page.goto(base + "/")
    expect(page.locator("#key-form")).to_be_visible()
    page.fill("#key-form input[name=api_key]", "adapt_000000000000_" + "x" * 43)
    page.click("#key-form button")
    expect(page.locator(".error[data-code=unauthorized]")).to_contain_text("Invalid or revoked")
    page.fill("#key-form input[name=api_key]", key)
    page.click("#key-form button")
    expect(page.locator("#new-job-form, #jobs")).not_to_have_count(0)
    page.reload()
    expect(page.locator("#jobs")).to_be_visible()
    assert page.locator("#key-form").count() == 0

    # A refused upload shows the API's code, message and offending line.
    bad = b"text,label\nfine film,good\nno label here,\n"
    refusal = httpx.post(f"{base}/v1/datasets", files={"file": ("bad.csv", bad)}, headers=auth).json()
    page.goto(base + "/#/datasets")
    upload = page.locator("#upload-form")
    upload.locator("input[name=file]").set_input_files(
        files=[{"name": "bad.csv", "mimeType": "text/csv", "buffer": bad}])
    upload.locator("button").click()
    shown = page.locator(f".error[data-code={refusal['error']['code']}]")
    expect(shown).to_contain_text(refusal["error"]["message"])
    expect(shown).to_contain_text(f"line {refusal['error']['details'][0]['line']}")

    # Upload the real dataset through the form.
    upload.locator("input[name=file]").set_input_files(
        files=[{"name": "toy.csv", "mimeType": "text/csv", "buffer": toy_csv(120)}])
    upload.locator("input[name=name]").fill("toy-dashboard")
    upload.locator("button").click()
    expect(page.locator("#upload-result")).to_contain_text("120 examples")
    expect(page.locator("#datasets tbody tr").first).to_contain_text("toy-dashboard")

    # Start a job from the dataset's "train" link: the form has the dataset chosen.
    page.locator("#upload-result a", has_text="Train").click()
    form = page.locator("#new-job-form")
    dataset_id = form.locator("select[name=training_dataset]").input_value()
    assert dataset_id.startswith("ds_")
    form.locator("select[name=base_model]").select_option("tiny-bert")
    form.locator("select[name=method]").select_option("full")
    form.locator("input[name=epochs]").fill(str(EPOCHS))
    form.locator("button").click()
    page.wait_for_url(re.compile(r".*#/jobs/job_\w+$"))
    job_id = page.url.rsplit("/", 1)[1]
    # A second, one-epoch `head` job (through the API) to compare with.
    other = httpx.post(f"{base}/v1/jobs", headers=auth, json={
        "training_dataset": dataset_id, "base_model": "tiny-bert", "method": "head",
        "hyperparameters": {"epochs": 1, "learning_rate": 0.001}}).json()
    assert other["status"] == "queued", other

    # The job page follows the job live until it has succeeded.
    expect(page.locator("h1 .badge[data-status=succeeded]")).to_be_visible(timeout=LONG)
    job = httpx.get(f"{base}/v1/jobs/{job_id}", headers=auth).json()
    assert (job["status"], job["training_dataset"], job["base_model"]) == (
        "succeeded", dataset_id, "tiny-bert")
    steps = job["progress"]["total_steps"]
    expect(page.locator("#progress .progress-text")).to_contain_text(f"step {steps}/{steps}")

    # Curves: the loss has a drawn line of several points; one validation point per epoch.
    train_loss = page.locator("#loss-chart path.series[data-series=train_loss]")
    assert int(train_loss.get_attribute("data-points")) >= EPOCHS
    assert len(re.findall(r"[ML][\d.]+ [\d.]+", train_loss.get_attribute("d"))) >= EPOCHS
    val_acc = page.locator("#val-chart path.series[data-series=val_accuracy]")
    assert int(val_acc.get_attribute("data-points")) == EPOCHS

    # The confusion matrix: one cell per (true, predicted) pair, counts as the API reports them.
    evaluation = httpx.get(f"{base}/v1/models/{job['model']}/evaluation", headers=auth).json()
    labels = evaluation["confusion_matrix"]["labels"]
    cells = page.locator("#confusion rect.cell")
    expect(cells).to_have_count(len(labels) ** 2)
    drawn = [int(c) for c in cells.evaluate_all("cells => cells.map(c => c.dataset.count)")]
    assert drawn == [n for row in evaluation["confusion_matrix"]["matrix"] for n in row]

    # Every logged event arrived over the SSE stream (fetch with the Authorization header).
    logged = httpx.get(f"{base}/v1/jobs/{job_id}/events", headers=auth).json()["data"]
    expect(page.locator("#events li")).to_have_count(len(logged))
    expect(page.locator("#events")).to_contain_text(logged[-1]["message"])

    # The latest evaluation is the last epoch's; the chosen checkpoint is labelled apart and
    # marked on both charts.
    checkpoints = httpx.get(f"{base}/v1/jobs/{job_id}/checkpoints", headers=auth).json()["data"]
    best = next(c for c in checkpoints if c["is_best"])
    expect(page.locator("#latest-metrics")).to_contain_text(f"epoch {EPOCHS}:")
    expect(page.locator("#best-metrics")).to_contain_text(f"epoch {best['epoch']}")
    for chart in ("#loss-chart", "#val-chart"):
        expect(page.locator(f"{chart} .marker")).to_have_count(1)
        expect(page.locator(f"{chart} .marker")).to_contain_text(f"chosen: epoch {best['epoch']}")
    # Epoch axes have whole-number ticks only, each once.
    ticks = page.locator("#val-chart .x-ticks text").all_text_contents()
    assert ticks and all(re.fullmatch(r"\d+", t) for t in ticks) and len(set(ticks)) == len(ticks), ticks
    assert {str(e) for e in range(1, EPOCHS + 1)} <= set(ticks)
    y_ticks = page.locator("#val-chart .y-ticks text").all_text_contents()
    assert len(set(y_ticks)) == len(y_ticks) >= 2, y_ticks

    # The chosen checkpoint downloads as a ZIP (fetched with the key, handed over as a blob).
    with page.expect_download() as dl:
        page.click("#download-best")
    assert dl.value.suggested_filename == f"{best['id']}.zip"
    assert zipfile.is_zipfile(dl.value.path())

    shot = screenshot_path("job-page.png")
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\ndashboard job page screenshot: {shot}")

    # The model page's predict box shows the labels the API gives.
    page.click("#model-link")
    texts = ["a wonderful brilliant moving film", "an awful boring tedious film"]
    page.fill("#predict-form textarea", "\n".join(texts))
    page.click("#predict-form button")
    shown_labels = page.locator("#predictions .predicted-label")
    expect(shown_labels).to_have_count(2)
    api = httpx.post(f"{base}/v1/models/{job['model']}/predict", json={"inputs": texts},
                     headers=auth).json()
    assert shown_labels.all_inner_texts() == [p["label"] for p in api["predictions"]]
    assert set(shown_labels.all_inner_texts()) <= set(labels)
    page.screenshot(path=str(screenshot_path("model-page.png")), full_page=True)
    # The model page's Download button: the model's checkpoint as a ZIP transformers can load.
    with page.expect_download() as dl:
        page.click("#download-checkpoint")
    model = httpx.get(f"{base}/v1/models/{job['model']}", headers=auth).json()
    assert dl.value.suggested_filename == f"{model['checkpoint']}.zip"
    with zipfile.ZipFile(dl.value.path()) as z:
        assert any(name.endswith("config.json") for name in z.namelist())

    # The event log opens at its first event, even when it has more than it shows (a shorter
    # list through the stylesheet makes it scroll).
    page.route("**/dashboard/static/app.css", lambda route: route.fulfill(
        response=(res := route.fetch()), body=res.text() + "\nol.events { max-height: 4rem; }"))
    page.goto(f"{base}/#/jobs/{job_id}")
    page.reload()
    expect(page.locator("#events li")).to_have_count(len(logged))
    log_box = page.locator("#events")
    assert log_box.evaluate("el => el.scrollHeight > el.clientHeight + 10")  # it does scroll
    assert log_box.evaluate("""el => {
        const box = el.getBoundingClientRect(), first = el.firstElementChild.getBoundingClientRect();
        return el.scrollTop === 0 && first.top >= box.top - 1 && first.bottom <= box.bottom + 1;
    }""")
    expect(log_box.locator("li").first).to_contain_text(logged[0]["message"])
    page.unroute("**/dashboard/static/app.css")

    # Compare: tick both jobs in the list, "Compare" shows their curves overlaid and their
    # settings side by side, the differing ones highlighted.
    deadline = time.time() + LONG / 1000
    while httpx.get(f"{base}/v1/jobs/{other['id']}", headers=auth).json()["status"] != "succeeded":
        assert time.time() < deadline, "the second job did not finish"
        time.sleep(0.5)
    page.goto(f"{base}/#/jobs")
    compare = page.locator("#compare-jobs")
    expect(compare).to_be_disabled()
    for jid in (job_id, other["id"]):
        page.check(f"#jobs input[name=compare][value={jid}]")
    expect(compare).to_be_enabled()
    compare.click()
    page.wait_for_url(re.compile(r".*#/compare\?jobs=job_\w+,job_\w+$"))
    for metric in ("val_accuracy", "val_loss", "train_loss"):
        paths = page.locator(f"#compare-{metric} path.series")
        expect(paths).to_have_count(2)
        drawn = paths.evaluate_all("ps => ps.map(p => p.dataset.series)")
        assert sorted(drawn) == sorted([job_id, other["id"]])
        assert all(int(n) >= 1 for n in paths.evaluate_all("ps => ps.map(p => p.dataset.points)"))
        expect(page.locator(f"#compare-{metric} .legend text")).to_have_count(2)
    val_points = page.locator("#compare-val_accuracy path.series").evaluate_all(
        "ps => Object.fromEntries(ps.map(p => [p.dataset.series, +p.dataset.points]))")
    assert val_points == {job_id: EPOCHS, other["id"]: 1}
    ticks = page.locator("#compare-val_accuracy .x-ticks text").all_text_contents()
    assert all(re.fullmatch(r"\d+", t) for t in ticks), ticks
    differs = page.locator("#compare-table tr.differs").evaluate_all("rs => rs.map(r => r.dataset.row)")
    assert {"Method", "epochs", "learning_rate"} <= set(differs), differs
    assert "Base model" not in differs
    shot = screenshot_path("compare.png")
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"dashboard compare view screenshot: {shot}")


def test_keyless_default_and_api_errors_are_shown(servers, page):
    from playwright.sync_api import expect

    base = servers["open"]
    page.goto(base + "/")
    expect(page.locator("#new-job-form, #jobs")).not_to_have_count(0)
    assert page.locator("#key-form").count() == 0
    # An unknown job: the API's 404 in the page, not a blank screen.
    page.goto(base + "/#/jobs/job_doesnotexist")
    expect(page.locator(".error[data-code=not_found]")).to_contain_text("404")
    page.goto(base + "/#/models")
    expect(page.locator("#models")).to_be_visible()


def fake_job(job_id: str, status: str, **extra) -> dict:
    return {"object": "job", "id": job_id, "status": status, "base_model": "tiny-bert",
            "training_dataset": "ds_fake", "validation_dataset": None, "validation_split": 0.1,
            "method": "head", "hyperparameters": {"epochs": 1}, "early_stopping": None,
            "select_checkpoint_by": "val_accuracy", "seed": 42, "suffix": None, "progress": None,
            "metrics": None, "error": None, "model": None, "attempts": 0,
            "created_at": "2026-01-01T00:00:00Z", "started_at": None, "finished_at": None,
            "metadata": {}, **extra}


def serve_fake_jobs(page, jobs: dict, metrics: dict, checkpoints: dict) -> None:
    """Answer the job page's calls for made-up jobs (the shapes the API gives) in the browser."""
    import json

    def handle(route):
        path = route.request.url.split("/v1/jobs/", 1)[1].split("?")[0]
        job_id, _, what = path.partition("/")
        if what == "events":
            return route.fulfill(status=200, content_type="text/event-stream", body="")
        body = {"": jobs[job_id], "metrics": {"object": "list", "data": metrics.get(job_id, [])},
                "checkpoints": {"object": "list", "data": checkpoints.get(job_id, [])}}[what]
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/v1/jobs/job_fake\w*(/\w+)?(\?.*)?$"), handle)


def test_queue_position_and_a_one_epoch_chart(servers, page):
    """A queued job says its place in the queue when the API gives one (and nothing when not); a
    one-epoch chart whose values differ by 0.0014 is not stretched over the full height."""
    from playwright.sync_api import expect

    base = servers["open"]
    ckpt = {"object": "checkpoint", "id": "ckpt_fake", "job": "job_fake_done", "step": 8, "epoch": 1,
            "metrics": {"val_accuracy": 0.98, "val_macro_f1": 0.9814, "val_loss": 0.05},
            "is_best": True, "bytes": 10, "created_at": "2026-01-01T00:00:00Z"}
    serve_fake_jobs(page, {
        "job_fake_queued": fake_job("job_fake_queued", "queued", queue={"position": 3, "workers": 2}),
        "job_fake_plain": fake_job("job_fake_plain", "queued"),
        "job_fake_done": fake_job("job_fake_done", "succeeded", finished_at="2026-01-01T00:01:00Z",
                                  progress={"epoch": 1, "epochs": 1, "step": 8, "total_steps": 8}),
    }, {"job_fake_done": [{"step": 8, "epoch": 1, "name": n, "value": v}
                          for n, v in ckpt["metrics"].items()]}, {"job_fake_done": [ckpt]})
    page.goto(base + "/#/jobs/job_fake_queued")
    expect(page.locator("#queue")).to_have_text("queued: position 3, 2 workers")
    page.goto(base + "/#/jobs/job_fake_plain")
    expect(page.locator("h1")).to_contain_text("job_fake_plain")
    expect(page.locator("#progress .progress-text")).to_have_text("waiting for a worker")
    assert page.locator("#queue").count() == 0
    page.goto(base + "/#/jobs/job_fake_done")
    expect(page.locator("h1")).to_contain_text("job_fake_done")
    expect(page.locator("#val-chart .marker")).to_contain_text("chosen: epoch 1")
    y_ticks = page.locator("#val-chart .y-ticks text").all_text_contents()
    assert len(y_ticks) == len(set(y_ticks)) >= 2, y_ticks
    values = [float(v) for v in y_ticks]
    assert max(values) - min(values) >= 0.02, y_ticks  # at least ~5 % of 0.98, not 0.0014
    assert max(values) <= 1.0
    x_ticks = page.locator("#val-chart .x-ticks text").all_text_contents()
    assert all(re.fullmatch(r"\d+", t) for t in x_ticks) and "1" in x_ticks, x_ticks
    expect(page.locator("#latest-metrics")).to_contain_text("epoch 1: val_accuracy 0.9800")
