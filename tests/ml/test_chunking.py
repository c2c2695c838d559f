"""Long texts: windows that cover a text with the overlap asked for, chosen automatically when
most texts overflow max_length, and a model that finds evidence truncation cannot see — in
training and in the service's predict, and, read the same way, in explain, the downloaded
checkpoint in transformers, an ONNX export (its README's code and the worker's evaluation) and the
figures a compressed model is measured by."""
import io
import random
import re
import zipfile
from contextlib import redirect_stdout

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline

from app.jobs.archive import zip_directory
from app.ml import runtime_eval
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import Splits, encode_windows
from app.ml.distill import teacher_logits
from app.ml.measure import figures
from app.ml.modeling import load_tokenizer
from app.ml.modeling_adapt import pool_windows
from app.ml.onnx_export import export_onnx
from app.ml.recipe import BaseModelSpec, build_recipe
from app.models_api.inference import Predictor, load_predictor

FILLER = ["film", "scene", "actor", "story", "plot", "camera", "music", "screen"]


def long_docs(n: int, seed: int) -> tuple[list[str], list[int]]:
    """~150 neutral words, then the deciding words at the end (past the first window)."""
    rng = random.Random(seed)
    texts, labels = [], []
    for i in range(n):
        word = "wonderful" if i % 2 else "terrible"
        texts.append(" ".join(rng.choices(FILLER, k=150) + [word] * 30))
        labels.append(i % 2)
    return texts, labels


def test_windows_cover_the_text_with_the_overlap(tiny_model):
    tok = load_tokenizer(tiny_model)
    text = " ".join(f"w{i}" for i in range(200))
    ids = tok(text, add_special_tokens=False)["input_ids"]
    windows = encode_windows(tok, [text], [0], 64, 16, 32).windows[0]
    bodies = [w[1:-1] for w in windows]  # [CLS] … [SEP]
    assert all(len(w) <= 64 for w in windows) and len(windows) > 1
    assert sum(bodies, []) != ids  # overlapping, not a partition
    for a, b in zip(bodies, bodies[1:]):
        assert a[-16:] == b[:16]
    assert bodies[0] == ids[:62] and bodies[-1][-1] == ids[-1]  # from the start to the end
    capped = encode_windows(tok, [text], [0], 64, 16, 2).windows[0]
    assert len(capped) == 2  # max_chunks: the rest is cut, as truncation would


def test_pooling_averages_each_texts_windows():
    logits = torch.tensor([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    assert pool_windows(logits, torch.tensor([0, 0, 1])).tolist() == [[2.0, 1.0], [5.0, 5.0]]


def train(tiny_model, tmp_path, chunking):
    # head: the frozen encoder's features of every window, averaged per text (the windows'
    # logits are averaged in the model's forward at predict time)
    hp = resolve_hyperparameters("head", {"epochs": 20, "batch_size": 8, "learning_rate": 2e-2,
                                          "max_length": 64, "chunking": chunking,
                                          "chunk_overlap": 16})
    cfg = TrainConfig(method="head", labels=["bad", "good"], seed=0, hyperparameters=hp)
    splits = Splits(cfg.labels, *long_docs(96, 1), *long_docs(32, 2))
    recipe = build_recipe(cfg, BaseModelSpec("text-classification", tiny_model), splits,
                          work_dir=tmp_path / str(chunking))
    recipe.setup()
    result = recipe.train()
    return recipe, result


def test_the_default_overlap_follows_a_short_max_length_and_a_given_one_is_checked():
    """A job with a short max_length and no chunk_overlap is valid (the default overlap shrinks to
    half the window); an overlap the caller gives above that is a clear error."""
    assert resolve_hyperparameters("head", {"max_length": 16})["chunk_overlap"] == 8
    assert resolve_hyperparameters("head", {})["chunk_overlap"] == 32
    with pytest.raises(ValueError, match="at most half of max_length"):
        resolve_hyperparameters("head", {"max_length": 16, "chunk_overlap": 10})


@pytest.fixture(scope="module")
def chunked(tiny_model, tmp_path_factory):
    """(recipe, result) of a head model trained with chunking chosen automatically."""
    return train(tiny_model, tmp_path_factory.mktemp("chunked"), "auto")


def test_chunking_is_chosen_when_texts_overflow_and_finds_late_evidence(tiny_model, tmp_path,
                                                                        chunked):
    _, result = chunked
    data = result.best_report["data"]
    assert data["chunking"] and data["chosen"] == "auto"
    assert data["longer_than_max_length"] == data["examples"] == 128
    assert data["truncated_examples"] == 0  # every window fits in max_chunks
    _, truncated = train(tiny_model, tmp_path, 0)
    cut = truncated.best_report["data"]
    assert not cut["chunking"] and cut["truncated_examples"] == 128
    assert truncated.best_metrics["val_accuracy"] <= 0.75  # chance: the evidence was cut off
    assert result.best_metrics["val_accuracy"] >= 0.9
    # predict reads the checkpoint's chunking and gives the same answers on new documents
    texts, labels = long_docs(20, 3)
    with torch.inference_mode():
        preds = Predictor(result.best_checkpoint).probabilities(texts).argmax(-1).tolist()
    assert sum(p == y for p, y in zip(preds, labels)) >= 18


@pytest.mark.parametrize("mode", [0, 1])
def test_the_chunking_hyperparameter_overrides_the_automatic_choice(tiny_model, mode):
    from app.ml.tasks import TextTask

    task = TextTask(tiny_model)
    short = Splits(["a", "b"], ["short text", "another one"], [0, 1], ["tiny"], [0])
    hp = resolve_hyperparameters("full", {"max_length": 64, "chunking": mode})
    task.prepare(TrainConfig(method="full", labels=["a", "b"], hyperparameters=hp),
                 short.train, short.validation)
    assert task.chunking is bool(mode) and task.data_report["longer_than_max_length"] == 0


# -- everything else that reads a chunked model's texts reads them as predict does ------------
def test_explain_attributes_every_window_and_gives_predicts_probabilities(chunked):
    """The deciding words sit past the first window: explain scores them (cut at max_length they
    scored 0 and the text was `truncated`), with predict's probabilities; only words past the
    last window (max_chunks) are left unscored."""
    ckpt = chunked[1].best_checkpoint
    predictor = load_predictor(ckpt)  # a head model: on a shared backbone, as served
    texts, labels = long_docs(6, 4)
    texts.append(" ".join(["film"] * 400 + ["wonderful"] * 30))  # 430 words: past 8 windows
    with torch.inference_mode():
        probs = predictor.probabilities(texts)
    found = predictor.attributions(texts, [None] * len(texts), steps=8)
    for text, item, p in zip(texts, found, probs, strict=True):
        assert torch.allclose(item.probs, p, atol=1e-5)
        assert [w for w, *_ in item.words] == text.split()
    for item, y in zip(found[:6], labels, strict=True):
        assert not item.truncated and item.target == y  # the model reads the late words
        if y == 1:  # (the all-padding baseline already reads as "bad": nothing to attribute)
            late = [s for w, *_, s in item.words if w == "wonderful"]
            filler = [abs(s) for w, *_, s in item.words if w != "wonderful"]
            assert sum(late) > 0.5 and sum(late) / len(late) > 3 * sum(filler) / len(filler)
    cut = found[-1]
    assert cut.truncated and all(s == 0 for *_, s in cut.words[-30:])  # past the 8th window
    assert any(s != 0 for *_, s in cut.words[:100])


def test_the_downloaded_checkpoint_reads_long_texts_as_predict_does(chunked, tmp_path):
    """The checkpoint's ZIP as GET /v1/checkpoints/{id}/content sends it, unzipped: the README's
    pipeline, and the model's predict_texts, give predict's probabilities for long texts."""
    ckpt = chunked[1].best_checkpoint
    (tmp_path / "staging").mkdir()
    with zipfile.ZipFile(zip_directory(ckpt, tmp_path / "staging")) as zf:
        zf.extractall(tmp_path / "download")
    texts = long_docs(8, 5)[0] + ["a short wonderful film"]
    with torch.inference_mode():
        want = load_predictor(ckpt).probabilities(texts)
    clf = pipeline("text-classification", model=str(tmp_path / "download"),
                   trust_remote_code=True)
    for batch_size in (1, 4):
        got = clf(texts, top_k=None, batch_size=batch_size)
        for row, probs in zip(got, want, strict=True):
            scores = {r["label"]: r["score"] for r in row}
            assert [scores[label] for label in ["bad", "good"]] == pytest.approx(
                probs.tolist(), abs=1e-5)
    model = AutoModelForSequenceClassification.from_pretrained(
        tmp_path / "download", trust_remote_code=True).eval()
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "download", trust_remote_code=True)
    assert torch.allclose(model.predict_texts(tokenizer, texts), want, atol=1e-5)


def test_an_onnx_export_and_its_evaluation_read_long_texts_as_predict_does(chunked, tmp_path,
                                                                           monkeypatch):
    """The export archive's README code, run on long texts, prints predict's labels; the worker's
    evaluation reads windows on both sides, so each scores what predict scores."""
    from workers.exports import evaluate  # deferred: the worker's export task

    ckpt = chunked[1].best_checkpoint
    onnx_path = export_onnx(ckpt, tmp_path / "export", None)
    texts, labels = long_docs(16, 6)
    with torch.inference_mode():
        want = load_predictor(ckpt).probabilities(texts).argmax(-1).tolist()
    accuracy = sum(p == y for p, y in zip(want, labels)) / len(labels)
    assert accuracy >= 0.9  # the late evidence is read
    ev = evaluate(ckpt, onnx_path, runtime_eval.Inputs(ckpt),
                  Splits(["bad", "good"], [], [], texts, labels))
    assert ev["original"]["accuracy"] == ev["export"]["accuracy"] == pytest.approx(accuracy)
    assert ev["delta"]["agreement"] == 1.0
    code = re.search(r"```python\n(.*?)```", (tmp_path / "export" / "README.md").read_text(),
                     re.S).group(1)
    code = re.sub(r"^texts = .*$", f"texts = {texts!r}", code, count=1, flags=re.M)
    monkeypatch.chdir(tmp_path / "export")
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the export's own README
    assert eval(out.getvalue()) == [["bad", "good"][i] for i in want]  # noqa: S307 - labels


def test_measure_and_teacher_logits_read_long_texts_as_predict_does(chunked):
    """What a compressed model is measured against (figures' accuracy) and what a student
    learns from (teacher_logits) are the chunked model's predictions, not truncation's."""
    ckpt = chunked[1].best_checkpoint
    texts, labels = long_docs(16, 7)
    predictor = load_predictor(ckpt)
    with torch.inference_mode():
        probs = predictor.probabilities(texts)
    logits = teacher_logits(ckpt, texts)
    assert torch.allclose((logits / predictor.temperature).softmax(-1), probs, atol=1e-5)
    accuracy = sum(p == y for p, y in zip(probs.argmax(-1).tolist(), labels)) / len(labels)
    got = figures(ckpt, texts, labels, latency_examples=3)
    assert got["accuracy"] == round(accuracy, 4) >= 0.9 and got["latency_ms_b1"] > 0
