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
    # The evaluation card says how the scores were calibrated (the real fit's numbers).
    cal = evaluation["calibration"]
    expect(page.locator("#calibration")).to_contain_text(
        f"Calibration: temperature {js_num(cal['temperature'], 2)} · ECE {js_num(cal['ece_before'], 3)}"
        f" → {js_num(cal['ece_after'], 3)}")
    expect(page.locator("#long-texts")).to_contain_text(
        f"Long texts: 0 of {evaluation['data']['examples']} examples over max_length")
    # "Unsure below" 1: every score is under it, so each row says "unsure", its scores still shown.
    page.fill("#predict-form input[name=min_confidence]", "1")
    page.click("#predict-form button")
    expect(page.locator("#predictions .unsure")).to_have_count(2)
    expect(page.locator("#predictions .predicted-label")).to_have_count(0)
    expect(page.locator("#predictions tbody tr").first.locator(".score")).to_have_count(len(labels))
    unsure = httpx.post(f"{base}/v1/models/{job['model']}/predict", headers=auth,
                        json={"inputs": texts, "min_confidence": 1.0}).json()["predictions"]
    assert all(p["unsure"] and p["label"] is None for p in unsure), unsure
    page.fill("#predict-form input[name=min_confidence]", "")
    page.screenshot(path=str(screenshot_path("model-page.png")), full_page=True)
    # Explain: each word shaded by the score the API gives (green toward the label, red against).
    page.click("#explain-button")
    words = page.locator("#explanations tr:first-child .word")
    expect(words).to_have_count(5)
    why = httpx.post(f"{base}/v1/models/{job['model']}/explain", json={"inputs": texts},
                     headers=auth).json()["explanations"]
    assert words.all_inner_texts() == texts[0].split()
    assert words.evaluate_all("ws => ws.map(w => +w.dataset.score)") == pytest.approx(
        [w["score"] for w in why[0]["words"]], rel=1e-3, abs=1e-6)
    strongest = max(why[0]["words"], key=lambda w: abs(w["score"]))
    shades = words.evaluate_all("ws => ws.map(w => getComputedStyle(w).backgroundColor)")
    assert "0.65)" in shades[why[0]["words"].index(strongest)], shades  # the strongest, fully
    assert page.locator("#explanations .explained-label").all_inner_texts() == [
        e["target"] for e in why]
    page.screenshot(path=str(screenshot_path("model-explain.png")), full_page=True)
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


def js_num(v, digits: int) -> str:
    """The dashboard's fmtNum for a number: whole numbers as they are, others with `digits`."""
    return f"{int(v):,}" if float(v).is_integer() else f"{v:.{digits}f}"


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


def test_an_image_explanation_is_drawn_over_the_image(servers, page, tmp_path):
    """The predict box of an image model: Explain lays the API's heatmap over each image (the
    model and the API's answer are made up in the browser; the page's drawing is real)."""
    import base64
    import io
    import json

    from PIL import Image
    from playwright.sync_api import expect

    from app.models_api.inference import mark_unsure

    base = servers["open"]
    model = {"object": "model", "id": "mdl_fakeimg", "name": "digits", "task": "image-classification",
             "labels": ["0", "1"], "base_model": "mobilenet-v2-imagenet", "job": None,
             "checkpoint": "ckpt_fake", "metrics": {}, "created_at": "2026-01-01T00:00:00Z"}
    heat = Image.new("L", (40, 20))
    heat.paste(255, (0, 0, 10, 20))  # the evidence: the left quarter
    buf = io.BytesIO()
    heat.save(buf, format="PNG")
    answer = {"object": "explanation", "model": model["id"], "method": "integrated_gradients", "steps": 16,
              "explanations": [{"label": "1", "score": 0.9, "target": "1",
                                "top": [{"label": "1", "score": 0.9}, {"label": "0", "score": 0.1}],
                                "heatmap": {"width": 40, "height": 20, "format": "png",
                                            "png_base64": base64.b64encode(buf.getvalue()).decode()}}]}
    sent = []

    def handle(route):
        url = route.request.url
        if url.endswith("/predict"):  # answered as the API marks it: below 0.95, unsure
            sent.append(route.request.post_data_buffer)
            top = [{"label": "1", "score": 0.9}, {"label": "0", "score": 0.1}]
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(
                {"object": "prediction", "model": model["id"], "predictions": mark_unsure(
                    [{"label": "1", "score": 0.9, "top": top}], 0.95, None)}))
        if url.endswith("/explain"):
            sent.append(route.request.post_data_buffer)
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))
        if url.endswith("/evaluation"):
            return route.fulfill(status=404, content_type="application/json", body=json.dumps(
                {"error": {"code": "no_evaluation", "message": "none"}}))
        if re.search(r"/(exports|descendants)(\?.*)?$", url):  # the page's other cards: none
            return route.fulfill(status=200, content_type="application/json", body=json.dumps(
                {"object": "list", "data": [], "has_more": False}))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(model))

    page.route(re.compile(r".*/v1/models/mdl_fakeimg(/\w+)?(\?.*)?$"), handle)
    image = tmp_path / "digit.png"
    Image.new("RGB", (40, 20), (200, 200, 200)).save(image)
    page.goto(base + "/#/models/mdl_fakeimg")
    page.set_input_files("#predict-form input[type=file]", str(image))
    page.select_option("#predict-form select[name=target]", "1")
    page.click("#explain-button")
    canvas = page.locator("#explanations canvas.heatmap")
    expect(canvas).to_have_attribute("data-drawn", "true")
    assert b'name="target"' in sent[0] and b'name="files"' in sent[0]
    # Red, opaque where the heatmap is 255, clear where it is 0; laid exactly over the image.
    left, right = canvas.evaluate("""c => [c.getContext("2d").getImageData(2, 10, 1, 1).data,
                                            c.getContext("2d").getImageData(30, 10, 1, 1).data]
                                      .map(d => Array.from(d))""")
    assert left[0] == 255 and left[3] > 150 and right[3] == 0, (left, right)
    img_box = page.locator("#explanations .heatmap-overlay img").bounding_box()
    canvas_box = canvas.bounding_box()
    assert all(abs(img_box[k] - canvas_box[k]) < 1 for k in ("x", "y", "width", "height"))
    expect(page.locator("#explanations .explained-label")).to_have_text("1")
    # Predict with "Unsure below" 0.95: sent as the multipart field, the answer shown as unsure.
    page.fill("#predict-form input[name=min_confidence]", "0.95")
    page.click("#predict-form button[value=predict]")
    expect(page.locator("#predictions .unsure")).to_have_text("unsure")
    expect(page.locator("#predictions .score")).to_have_count(2)
    assert b'name="min_confidence"\r\n\r\n0.95\r\n' in sent[1], sent[1]


def fake_model(model_id: str, **extra) -> dict:
    return {"object": "model", "id": model_id, "name": f"name-{model_id}",
            "task": "text-classification", "labels": ["bad", "good"], "base_model": "tiny-bert",
            "job": None, "checkpoint": f"ckpt_{model_id}", "metrics": {}, "source_model": None,
            "compression": None, "created_at": "2026-01-01T00:00:00Z", **extra}


def test_a_model_page_lists_its_compressed_descendants_with_deltas(servers, page):
    """The lineage card: the descendants' figures and their delta against this model; a
    descendant's own page names the model it was distilled from."""
    import json

    from playwright.sync_api import expect

    src = {"params": 22_700_000, "size_bytes": 90_900_000, "latency_ms_b1": 9.0, "accuracy": 0.78}
    student = fake_model("mdl_fake_student", source_model="mdl_fake_src", compression={
        "kind": "distill", "source_model": "mdl_fake_src", "params": 15_600_000,
        "size_bytes": 62_500_000, "latency_ms_b1": 2.9, "accuracy": 0.7712, "source": src,
        "delta": {"accuracy": -0.0088, "speedup_b1": 3.1, "params_ratio": 0.69}})
    pruned = fake_model("mdl_fake_pruned", source_model="mdl_fake_src", compression={
        "kind": "prune", "source_model": "mdl_fake_src", "params": 20_000_000,
        "size_bytes": 80_000_000, "latency_ms_b1": 7.5, "accuracy": 0.785, "source": src,
        "delta": {"accuracy": 0.005, "speedup_b1": 1.2}})
    models = {m["id"]: m for m in (fake_model("mdl_fake_src"), student, pruned)}
    kids = {"mdl_fake_src": [student, pruned]}

    def handle(route):
        path = route.request.url.split("/v1/models/", 1)[1].split("?")[0]
        model_id, _, what = path.partition("/")
        if what == "evaluation":
            body, status = {"error": {"code": "no_evaluation", "message": "none",
                                      "param": None, "details": []}}, 404
        elif what == "descendants":
            body, status = {"object": "list", "data": kids.get(model_id, []),
                            "has_more": False}, 200
        else:
            body, status = models[model_id], 200
        route.fulfill(status=status, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/v1/models/mdl_fake\w*(/\w+)?(\?.*)?$"), handle)
    page.goto(servers["open"] + "/#/models/mdl_fake_src")
    rows = page.locator("#descendants tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text("name-mdl_fake_student")
    expect(rows.nth(0)).to_contain_text("distill")
    expect(rows.nth(0).locator(".delta-accuracy")).to_have_text("-0.88 pts")
    expect(rows.nth(0)).to_contain_text("3.10×")
    expect(rows.nth(1)).to_contain_text("prune")
    expect(rows.nth(1).locator(".delta-accuracy")).to_have_text("+0.50 pts")
    expect(rows.nth(1)).to_contain_text("80.0 MB")
    page.screenshot(path=str(screenshot_path("model-descendants.png")), full_page=True)
    rows.nth(0).locator("a").click()
    expect(page.locator("#model-origin")).to_contain_text("Distilled from mdl_fake_src")
    expect(page.locator("#descendants-empty")).to_be_visible()


def test_the_model_page_exports_to_onnx_and_lists_the_measured_export(servers, worker, page):
    """The model page's Exports card: create an int8 export, watch its row fill in with the size,
    latency and accuracy the worker measured, and download its archive."""
    from playwright.sync_api import expect

    base = servers["open"]
    ds = httpx.post(f"{base}/v1/datasets", files={"file": ("e.csv", toy_csv(80, seed=4))}).json()
    job = httpx.post(f"{base}/v1/jobs", json={
        "base_model": "tiny-bert", "training_dataset": ds["id"], "validation_split": 0.25,
        "hyperparameters": {"epochs": 1, "batch_size": 8}}).json()
    deadline = time.time() + LONG / 1000
    while (job := httpx.get(f"{base}/v1/jobs/{job['id']}").json())["status"] != "succeeded":
        assert time.time() < deadline and job["status"] in ("queued", "running"), job
        time.sleep(0.5)
    page.goto(f"{base}/#/models/{job['model']}")
    expect(page.locator("#exports-table")).to_contain_text("No exports yet.")
    page.select_option("#export-quantize", "int8")
    page.click("#export-form button")
    row = page.locator("#exports-table tbody tr[data-status=succeeded]")
    expect(row).to_have_count(1, timeout=LONG)
    export = httpx.get(f"{base}/v1/models/{job['model']}/exports").json()["data"][0]
    assert export["quantize"] == "int8" and row.get_attribute("data-id") == export["id"]
    measured = export["evaluation"]["export"]
    expect(row.locator("td.accuracy")).to_have_text(f"{measured['accuracy']:.4f}")
    expect(row.locator("td.latency-b1")).to_have_text(f"{measured['latency_ms_b1']:.1f} ms")
    expect(row.locator("td.latency-b32")).to_have_text(f"{measured['latency_ms_b32']:.1f} ms")
    expect(row.locator("td.delta")).to_contain_text("pts")
    expect(row).to_contain_text("int8")
    with page.expect_download() as dl:
        row.locator("button.export-download").click()
    assert dl.value.suggested_filename == f"{export['id']}.zip"
    with zipfile.ZipFile(dl.value.path()) as z:
        assert {"model.onnx", "tokenizer.json", "labels.json"} <= set(z.namelist())
    page.screenshot(path=str(screenshot_path("model-exports.png")), full_page=True)


def test_the_dataset_page_shows_its_quality_report(servers, page):
    """The dataset page: the report's warnings, its duplicate groups by line, the likely label
    errors with the suggested label, class balance and lengths (a report made by app.ml.quality
    on made-up features, served in place of the API's)."""
    import json

    import numpy as np
    from playwright.sync_api import expect

    from app.ml.quality import checks
    from app.ml.quality.report import Near, Sample, own_report

    texts = [f"review {i}" for i in range(30)] + ["review 3", "REVIEW 4!"]
    labels = ["a" if i % 3 else "b" for i in range(30)] + ["b", "b"]
    rng = np.random.default_rng(0)
    centre = {"a": rng.normal(size=16), "b": rng.normal(size=16)}
    features = np.stack([centre[y] for y in labels]) + 0.3 * rng.normal(size=(32, 16))
    features[7] = centre["b"] + 0.3 * rng.normal(size=16)  # labelled "a", looks like a "b"
    sample = Sample([{"row": i, "line": i + 2} for i in range(32)], labels, texts,
                    [checks.normalize_text(t) for t in texts], features, 32,
                    {"characters": checks.distribution([len(t) for t in texts])})
    counts = {y: labels.count(y) for y in ("a", "b")}
    summary, details = own_report(sample, ["a", "b"], counts, near=Near(cosine=0.999))
    details["base_model"] = "minilm-l6-v2"
    quality = {"id": "dq_fake", "status": "succeeded", "error": None, "summary": summary,
               "finished_at": "2026-11-30T06:00:00Z"}
    dataset = {"object": "dataset", "id": "ds_fake", "name": "reviews.csv",
               "task": "text-classification", "format": "csv", "bytes": 100, "sha256": "0" * 64,
               "num_examples": 32, "labels": ["a", "b"], "class_counts": counts, "warnings": [],
               "text_column": "text", "label_column": "label", "status": "ready",
               "quality": quality, "created_at": "2026-11-30T05:59:00Z"}
    report = {"object": "quality_report", "dataset": "ds_fake", "against": None,
              "details": details, "created_at": "2026-11-30T05:59:00Z", **quality}

    def handle(route):
        body = report if route.request.url.split("?")[0].endswith("/quality") else dataset
        route.fulfill(status=200, content_type="application/json", body=json.dumps(body))

    page.route(re.compile(r".*/v1/datasets/ds_fake(/quality)?(\?.*)?$"), handle)
    page.goto(servers["open"] + "/#/datasets/ds_fake")
    expect(page.locator("#quality")).to_contain_text("group(s) of exact duplicates")
    expect(page.locator("#quality-duplicates .exact li").first).to_contain_text("line 5 (b)")
    expect(page.locator("#quality-duplicates .near li").first).to_contain_text("line 6")
    expect(page.locator("#quality-labels")).to_contain_text("line 9")
    expect(page.locator("#quality-balance")).to_contain_text("characters")
    page.screenshot(path=str(screenshot_path("dataset-quality.png")), full_page=True)


def test_calibration_long_texts_unsure_and_preflight_are_shown(servers, page):
    """What the API says about trusting a model and a job before it runs: the evaluation's
    calibration (fitted by app.ml.calibration on made-up logits) with its per-label thresholds
    and its long-text report; a text prediction under "Unsure below" (marked by the API's own
    mark_unsure); a dry run's pre-flight; and the new-job form's dry run with batch size auto
    (its body checked against the API's JobCreate). The API's answers are served in the browser."""
    import json

    import torch
    from playwright.sync_api import expect

    from app.jobs.schemas import JobCreate
    from app.ml.calibration import calibrate
    from app.models_api.inference import mark_unsure

    base = servers["open"]
    gen = torch.Generator().manual_seed(0)
    truth = torch.randint(0, 2, (60,), generator=gen)
    logits = 4 * torch.nn.functional.one_hot(truth, 2).float() + 4 * torch.randn(60, 2, generator=gen)
    cal = calibrate(logits, truth, ["bad", "good"], target_precision=0.9)
    long_texts = {"examples": 500, "max_length": 128, "longer_than_max_length": 37, "chunking": True,
                  "chosen": "auto", "truncated_examples": 2}
    evaluation = {"accuracy": 0.8, "macro_f1": 0.79, "calibration": cal, "data": long_texts,
                  "per_class": {n: {"precision": 0.8, "recall": 0.8, "f1": 0.8, "support": 30}
                                for n in ("bad", "good")},
                  "confusion_matrix": {"labels": ["bad", "good"], "matrix": [[24, 6], [6, 24]]}}
    sent = []

    def model_api(route):
        what = route.request.url.split("?")[0].rsplit("/", 1)[1]
        if what == "predict":
            body = json.loads(route.request.post_data)
            sent.append(body)
            made = [{"label": "good", "score": s, "top": [{"label": "good", "score": s},
                                                           {"label": "bad", "score": round(1 - s, 6)}]}
                    for s in (0.62, 0.93)]
            answer = {"object": "prediction", "model": "mdl_fake_cal",
                      "predictions": mark_unsure(made, body.get("min_confidence"), cal["thresholds"])}
        elif what == "evaluation":
            answer = evaluation
        elif what in ("exports", "descendants"):
            answer = {"object": "list", "data": [], "has_more": False}
        else:
            answer = fake_model("mdl_fake_cal")
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(re.compile(r".*/v1/models/mdl_fake_cal(/\w+)?(\?.*)?$"), model_api)
    page.goto(base + "/#/models/mdl_fake_cal")
    expect(page.locator("#calibration")).to_contain_text(
        f"Calibration: temperature {js_num(cal['temperature'], 2)} · ECE {js_num(cal['ece_before'], 3)}"
        f" → {js_num(cal['ece_after'], 3)}")
    assert 0 < min(cal["thresholds"].values()) < 0.62  # learned ones: 0.62 and 0.93 are sure
    rows = page.locator("#thresholds tbody tr")
    expect(rows).to_have_count(2)
    assert rows.all_inner_texts() == [
        f"{name}\t{'always (no threshold reaches it)' if t is None else js_num(t, 3)}"
        for name, t in cal["thresholds"].items()]
    expect(page.locator("#thresholds caption")).to_contain_text("precision ≥ 0.90")
    expect(page.locator("#long-texts")).to_have_text(
        "Long texts: 37 of 500 examples over max_length 128 — split into windows (chunking); "
        "2 still truncated past the last window")

    # Unsure below 0.8: the 0.62 prediction says "unsure" (muted, its scores kept), the 0.93 one
    # its label; the field goes out only when filled.
    page.fill("#predict-form textarea", "so-so film\ngreat film")
    page.fill("#predict-form input[name=min_confidence]", "0.8")
    page.click("#predict-form button[value=predict]")
    rows = page.locator("#predictions tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.nth(0).locator(".unsure")).to_have_text("unsure")
    expect(rows.nth(0)).to_contain_text("0.620")
    expect(rows.nth(0).locator(".score")).to_have_count(2)
    assert rows.nth(0).locator(".predicted-label").count() == 0
    expect(rows.nth(1).locator(".predicted-label")).to_have_text("good")
    assert rows.nth(1).locator(".unsure").count() == 0
    assert rows.nth(0).locator(".unsure").evaluate("e => getComputedStyle(e).fontStyle") == "italic"
    assert sent[-1] == {"inputs": ["so-so film", "great film"], "top_k": 2, "min_confidence": 0.8}
    page.fill("#predict-form input[name=min_confidence]", "")
    page.click("#predict-form button[value=predict]")
    expect(page.locator("#predictions .predicted-label")).to_have_text(["good", "good"])
    assert "min_confidence" not in sent[-1]
    page.screenshot(path=str(screenshot_path("model-calibration.png")), full_page=True)

    # A dry run's job page: marked as one, its pre-flight in words; a job without one shows none.
    preflight = {"device": "cpu", "batch_size": 16, "peak_memory_bytes": 300 * 2**20,
                 "memory_measure": "cpu_rss_delta", "memory_budget_bytes": 8 * 2**30,
                 "max_batch_size": 96, "fits": True, "setup_seconds": 3.1, "seconds_per_epoch": 30.7,
                 "seconds_total": 95.2, "epochs": 3, "steps_per_epoch": 7, "steps_measured": 3,
                 "data": None}
    serve_fake_jobs(page, {
        "job_fake_dry": fake_job("job_fake_dry", "succeeded", dry_run=True, preflight=preflight,
                                 hyperparameters={"epochs": 3, "batch_size": 16}),
        "job_fake_plain": fake_job("job_fake_plain", "queued"),
    }, {}, {})
    page.goto(base + "/#/jobs/job_fake_plain")
    expect(page.locator("h1")).to_contain_text("job_fake_plain")
    assert page.locator("#preflight").count() == 0 and page.locator("#dry-run").count() == 0
    created = []

    def create_job(route):
        if route.request.method != "POST":
            return route.fallback()
        created.append(route.request.post_data)
        route.fulfill(status=201, content_type="application/json", body=json.dumps(
            fake_job("job_fake_dry", "queued", dry_run=True)))

    page.route(re.compile(r".*/v1/jobs$"), create_job)
    ds = httpx.post(f"{base}/v1/datasets", files={"file": ("dry.csv", toy_csv(40, seed=7))}).json()
    page.goto(f"{base}/#/jobs?dataset={ds['id']}")
    form = page.locator("#new-job-form")
    expect(form.locator("select[name=training_dataset]")).to_have_value(ds["id"])
    form.locator("select[name=base_model]").select_option("tiny-bert")
    form.locator("select[name=batch_size]").select_option("auto")
    form.locator("input[name=dry_run]").check()
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*#/jobs/job_fake_dry$"))
    body = JobCreate.model_validate_json(created[0])
    assert body.dry_run and body.hyperparameters == {"epochs": 3, "batch_size": "auto"}
    expect(page.locator("#dry-run")).to_have_text("dry run")
    expect(page.locator("#preflight-device")).to_have_text("cpu")
    expect(page.locator("#preflight-memory")).to_have_text("300.0 MiB at batch size 16 (budget 8.00 GiB)")
    expect(page.locator("#preflight-batch")).to_have_text("96")
    expect(page.locator("#preflight-time")).to_have_text(
        "31 s per epoch · 1 min 35 s in total (3 epochs, setup 3.1 s)")
    page.screenshot(path=str(screenshot_path("job-preflight.png")), full_page=True)
