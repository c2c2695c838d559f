"""Distillation and pruning on the tiny model, with nothing else running: the loss, the student's
shape, the teacher's logits computed once and read back on resume, the pruned encoder's shapes
surviving export and reload, and the figures measured beside a source."""
import json

import pytest
import torch

from app.ml import checkpointing
from app.ml.callbacks import PeriodicSave
from app.ml.config import TrainConfig, resolve_hyperparameters
from app.ml.data import IGNORE_LABEL
from app.ml.distill import augment_texts, distill_loss, keep_layers, teacher_outputs
from app.ml.measure import compare, figures
from app.ml.modeling import encoder_blocks, load_exported
from app.ml.prune import parameter_count, prune_encoder, prune_ffn
from app.ml.recipe import SourceSpec
from test_recipe import text_recipe, toy
from test_resume import Crash

TRAIN, VAL = toy(80, 1), toy(24, 2)


def cfg(method, **hp):
    return TrainConfig(method=method, labels=["bad", "good"], seed=5,
                       hyperparameters=resolve_hyperparameters(
                           method, {"epochs": 2, "batch_size": 8, "learning_rate": 3e-3, **hp}))


@pytest.fixture(scope="module")
def teacher(tiny_model, tmp_path_factory):
    """A fine-tuned tiny text classifier's exported checkpoint (the teacher, the prune source)."""
    work = tmp_path_factory.mktemp("teacher")
    result = text_recipe(cfg("full", epochs=3), tiny_model, work, TRAIN, VAL)
    result.setup()
    return result.train().best_checkpoint


def distill_recipe(tiny_model, teacher, work, callbacks=(), resume_from=None, **hp):
    source = SourceSpec("distill", teacher, work / "resume" / "teacher-logits.safetensors")
    r = text_recipe(cfg("distill", **hp), tiny_model, work / "out", TRAIN, VAL,
                    callbacks=callbacks, resume_dir=work / "resume", source=source)
    r.setup(resume_from=resume_from)
    return r


def killed_and_resumed(tiny_model, teacher, work, every: int, crash_at: int, **hp):
    """A distill run saving every `every` steps, killed at step crash_at, then set up again from
    its latest resume checkpoint (returned, not yet trained)."""
    killed = distill_recipe(tiny_model, teacher, work, [PeriodicSave(every_steps=every),
                                                        Crash(crash_at)], **hp)
    assert killed.train().stop_reason == "killed"
    return distill_recipe(tiny_model, teacher, work, [PeriodicSave(every_steps=every)],
                          resume_from=checkpointing.latest(work / "resume"), **hp)


def test_distill_loss_mixes_softened_kl_and_cross_entropy():
    torch.manual_seed(0)
    student, teacher, labels = torch.randn(6, 3), torch.randn(6, 3), torch.tensor([0, 1, 2] * 2)
    ce = torch.nn.functional.cross_entropy(student, labels)
    assert torch.allclose(distill_loss(student, teacher, labels, 4.0, 0.0), ce)
    assert distill_loss(teacher, teacher, labels, 4.0, 1.0).abs() < 1e-6  # KL of equals is 0
    kl = torch.nn.functional.kl_div((student / 2).log_softmax(-1), (teacher / 2).softmax(-1),
                                    reduction="batchmean")
    assert torch.allclose(distill_loss(student, teacher, labels, 2.0, 0.3),
                          0.3 * 4 * kl + 0.7 * ce, atol=1e-6)


def test_teacher_only_examples_add_kl_and_no_cross_entropy():
    torch.manual_seed(1)
    student, teacher = torch.randn(4, 3), torch.randn(4, 3)
    labels = torch.tensor([2, IGNORE_LABEL, 0, IGNORE_LABEL])
    kl = torch.nn.functional.kl_div((student / 2).log_softmax(-1), (teacher / 2).softmax(-1),
                                    reduction="batchmean")
    ce = torch.nn.functional.cross_entropy(student[[0, 2]], labels[[0, 2]])
    assert torch.allclose(distill_loss(student, teacher, labels, 2.0, 0.3),
                          0.3 * 4 * kl + 0.7 * ce, atol=1e-6)
    none = torch.full((4,), IGNORE_LABEL)  # a batch of augmented copies only: KL alone, finite
    student.requires_grad_(True)
    loss = distill_loss(student, teacher, none, 2.0, 0.3)
    assert torch.allclose(loss, 0.3 * 4 * kl, atol=1e-6)
    loss.backward()
    assert torch.isfinite(student.grad).all() and student.grad.abs().sum() > 0


def test_augmented_copies_follow_the_rules_and_depend_only_on_the_seed():
    texts = [f"w{i} the film was quite good and long enough for me" for i in range(200)]
    copies = augment_texts(texts, 3, seed=7, mask_token="[MASK]")
    assert len(copies) == 600 and copies == augment_texts(texts, 3, 7, "[MASK]")
    assert copies != augment_texts(texts, 3, 8, "[MASK]")
    vocabulary = {w for t in texts for w in t.split()} | {"[MASK]"}
    assert all(c and set(c.split()) <= vocabulary for c in copies)  # no word from elsewhere
    words = [c.split() for c in copies]
    masked = sum(w.count("[MASK]") for w in words) / sum(map(len, words))
    short = sum(len(w) <= 5 for w in words) / len(words)  # n-grams kept (a text has 11 words)
    assert 0.05 < masked < 0.15 and 0.18 < short < 0.32
    assert copies[:200] != texts and sum(c == t for c, t in zip(copies, texts * 3)) < 60
    assert "[MASK]" not in " ".join(augment_texts(texts, 1, 7, None))  # no mask token: dropped


def test_a_distill_run_with_augmented_copies_trains_on_them_and_resumes_exactly(
        tiny_model, teacher, tmp_path):
    r = distill_recipe(tiny_model, teacher, tmp_path / "a", student_layers=1, augment_copies=2)
    assert r.task.logits.shape == (3 * len(TRAIN[0]), 2)  # the teacher labels every copy
    assert r.steps_per_epoch == 30  # 240 examples in batches of 8
    expected = r.train()
    assert expected.state.step == 60 and expected.best_metrics["val_accuracy"] >= 0.9
    resumed = killed_and_resumed(tiny_model, teacher, tmp_path / "b", 8, 37, student_layers=1,
                                 augment_copies=2)
    assert resumed.resumed_step == 32 and not resumed.task.teacher_computed
    result = resumed.train()
    a, b = dict(r.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.state.history == expected.state.history


def test_a_transfer_set_is_labelled_by_the_teacher_without_the_known_texts(tiny_model, teacher,
                                                                          tmp_path):
    """Transfer texts join the training set with no label (the teacher's logits alone); those
    that are training or validation texts, and repeats, are left out: the validation figures stay
    the student's own."""
    fresh = [f"{w} film" for w in ("superb superb", "dull dull", "brilliant moving", "tedious")]
    transfer = (*fresh, fresh[0], TRAIN[0][0], TRAIN[0][5], VAL[0][3])
    source = SourceSpec("distill", teacher, tmp_path / "resume" / "teacher-logits.safetensors",
                        transfer_texts=transfer)
    r = text_recipe(cfg("distill", student_layers=1), tiny_model, tmp_path / "out", TRAIN, VAL,
                    resume_dir=tmp_path / "resume", source=source)
    r.setup()
    known = {*TRAIN[0], *VAL[0]}
    assert all(t not in known for t in fresh)
    assert r.task.logits.shape == (len(TRAIN[0]) + 4, 2)  # the 4 fresh texts, once each
    assert r.task.data_report["transfer"] == {"texts": 8, "used": 4}
    assert r.steps_per_epoch == (len(TRAIN[0]) + 4 + 7) // 8
    # the teacher's logits on them are what it predicts for them
    teacher_says, _ = teacher_outputs(teacher, fresh)
    assert torch.allclose(r.task.logits[-4:], teacher_says, atol=1e-5)
    assert r.train().best_metrics["val_accuracy"] >= 0.9


def test_a_shallow_student_keeps_evenly_spaced_layers_ending_with_the_last():
    assert keep_layers(6, 2) == [2, 5] and keep_layers(6, 3) == [1, 3, 5]
    assert keep_layers(12, 4) == [2, 5, 8, 11] and keep_layers(2, 2) == [0, 1]
    with pytest.raises(ValueError):
        keep_layers(6, 7)


def test_distill_hyperparameters_are_validated():
    hp = resolve_hyperparameters("distill", {})
    assert (hp["temperature"], hp["alpha"], hp["student_layers"]) == (2.0, 0.5, None)
    for bad in ({"temperature": 0}, {"alpha": 1.5}, {"student_layers": 0},
                {"student_layers": 1.5}, {"temperature": "hot"}):
        with pytest.raises(ValueError):
            resolve_hyperparameters("distill", bad)
    with pytest.raises(ValueError, match="distill"):
        resolve_hyperparameters("full", {"temperature": 2})
    with pytest.raises(ValueError, match="text models only"):
        resolve_hyperparameters("distill", {"student_layers": 2}, "image-classification")
    assert resolve_hyperparameters("distill", {})["feature_weight"] == 0.0
    # text-only distill knobs: (a good value, bad ones)
    for name, good, bads in [("augment_copies", 4, (-1, 51, 1.5)),
                             ("feature_weight", 3, (-0.5, 101, "x"))]:
        assert resolve_hyperparameters("distill", {name: good})[name] == good
        for bad in bads:
            with pytest.raises(ValueError, match=name):
                resolve_hyperparameters("distill", {name: bad})
        with pytest.raises(ValueError, match="distill"):
            resolve_hyperparameters("full", {name: good})
        with pytest.raises(ValueError, match="unknown"):
            resolve_hyperparameters("distill", {name: good}, "image-classification")


def test_a_distilled_shallow_student_learns_and_reloads_at_its_depth(tiny_model, teacher,
                                                                      tmp_path):
    r = distill_recipe(tiny_model, teacher, tmp_path, student_layers=1)
    assert len(encoder_blocks(r.model.encoder)) == 1 and r.task.teacher_computed
    assert (tmp_path / "resume" / "teacher-logits.safetensors").is_file()
    result = r.train()
    assert result.best_metrics["val_accuracy"] >= 0.9
    model, _, meta = load_exported(result.best_checkpoint)
    assert len(encoder_blocks(model.encoder)) == 1 and meta["method"] == "distill"
    config = json.loads((result.best_checkpoint / "config.json").read_text())
    assert config["adapt_encoder"]["num_hidden_layers"] == 1


def test_a_distill_run_killed_and_resumed_reads_the_cached_teacher_logits_and_ends_the_same(
        tiny_model, teacher, tmp_path):
    straight = distill_recipe(tiny_model, teacher, tmp_path / "a", student_layers=1)
    expected = straight.train()
    resumed = killed_and_resumed(tiny_model, teacher, tmp_path / "b", 4, 13, student_layers=1)
    assert resumed.resumed_step == 12 and not resumed.task.teacher_computed  # read, not re-run
    assert torch.equal(resumed.task.logits, straight.task.logits)
    result = resumed.train()
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert result.state.history == expected.state.history


def _student_features(r) -> tuple[torch.Tensor, torch.Tensor]:
    """The student's pooled features of the training texts [N, D], in the teacher's order."""
    task, model = r.task, r.model.eval()
    feats = torch.empty(len(TRAIN[0]), model.head.in_features)
    with torch.no_grad():
        for idx, (inputs, _) in zip(task.batch_list(1), task.student.train_batches(1),
                                    strict=True):
            feats[idx] = model.features(inputs["input_ids"], inputs["attention_mask"])
    return feats


def _unexplained(student: torch.Tensor, teacher: torch.Tensor) -> float:
    """The share of the teacher's feature variance no linear map of the student's explains."""
    x = torch.cat([student, torch.ones(len(student), 1)], dim=1).double()
    y = teacher.double()
    w = torch.linalg.lstsq(x, y).solution
    return float(((x @ w - y) ** 2).sum() / ((y - y.mean(0)) ** 2).sum())


def test_feature_distillation_learns_the_teachers_features_and_exports_without_them(
        tiny_model, teacher, tmp_path):
    r = distill_recipe(tiny_model, teacher, tmp_path / "f", epochs=3, feature_weight=5.0)
    teacher_model, _, _ = load_exported(teacher)
    target = r.task.features
    assert target.shape == (len(TRAIN[0]), teacher_model.head.in_features)
    logits, feats = teacher_outputs(teacher, TRAIN[0][:5], features=True)
    with torch.no_grad():  # the cached features are the teacher's own, and give its logits
        assert torch.allclose(teacher_model.eval().head(feats), logits, atol=1e-5)
    assert torch.allclose(target[:5], feats, atol=1e-5)
    with torch.no_grad():  # the projection starts as the least-squares map from the student
        start = torch.nn.functional.mse_loss(r.model.feature_projection(_student_features(r)),
                                             target)
        random_map = torch.nn.Linear(*r.model.feature_projection.weight.shape[::-1])
        assert start < torch.nn.functional.mse_loss(random_map(_student_features(r)), target)
    result = r.train()
    assert result.best_metrics["val_accuracy"] >= 0.9
    # the student came closer to the teacher's embedding than the same student trained without
    plain = distill_recipe(tiny_model, teacher, tmp_path / "p", epochs=3)
    plain.train()
    learnt = _unexplained(_student_features(r), target)
    assert learnt < 0.8 * _unexplained(_student_features(plain), target)
    exported = load_exported(result.best_checkpoint)[0]  # the projection was for training only
    assert not any("feature_projection" in k for k in exported.state_dict())
    assert hasattr(r.model, "feature_projection")  # (and the run keeps it)


def test_feature_distillation_killed_and_resumed_ends_with_the_same_weights(
        tiny_model, teacher, tmp_path):
    straight = distill_recipe(tiny_model, teacher, tmp_path / "a", student_layers=1,
                              feature_weight=2.0)
    expected = straight.train()
    resumed = killed_and_resumed(tiny_model, teacher, tmp_path / "b", 4, 13, student_layers=1,
                                 feature_weight=2.0)
    assert resumed.resumed_step == 12 and not resumed.task.teacher_computed
    assert torch.equal(resumed.task.features, straight.task.features)
    result = resumed.train()
    a, b = dict(straight.model.named_parameters()), dict(resumed.model.named_parameters())
    assert "feature_projection.weight" in a and all(torch.equal(a[k], b[k]) for k in a)
    assert result.state.history == expected.state.history
    logits_only = distill_recipe(tiny_model, teacher, tmp_path / "c", student_layers=1).train()
    assert logits_only.state.history != expected.state.history  # the feature loss did something


def test_a_distilled_student_from_the_base_model_needs_no_layer_copy(tiny_model, teacher,
                                                                     tmp_path):
    r = distill_recipe(tiny_model, teacher, tmp_path, epochs=1)
    assert len(encoder_blocks(r.model.encoder)) == 2
    assert r.train().best_checkpoint is not None


def test_pruning_half_the_ffn_channels_shrinks_every_layer_and_survives_export(
        tiny_model, teacher, tmp_path):
    model, _, _ = load_exported(teacher)
    before, ids = parameter_count(model), {"input_ids": torch.tensor([[101, 2307, 102]]),
                                           "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    prune_ffn(model, 0.5)
    ffn = [m for n, m in model.named_modules() if n.endswith("intermediate.dense")]
    assert [m.out_features for m in ffn] == [32, 32]  # the tiny BERT's 64, halved
    assert parameter_count(model) < before
    src = SourceSpec("prune", teacher)
    r = text_recipe(cfg("prune", epochs=1, prune_ffn=0.5), tiny_model, tmp_path / "out", TRAIN, VAL,
                    source=src)
    r.setup()
    result = r.train()
    reloaded, _, _ = load_exported(result.best_checkpoint)
    assert reloaded.encoder.config.intermediate_size == 32
    reloaded.eval()
    trained = r.model.eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(**ids), trained(**ids), atol=1e-5)
    assert result.best_metrics["val_accuracy"] >= 0.9


def test_head_pruning_removes_whole_heads_and_the_download_reloads_them(teacher, tmp_path):
    """The pruned model computes exactly what the original does with the removed heads silenced
    (their columns of the attention's output projection zeroed), and the exported checkpoint
    reloads at the pruned shapes — in the service and through trust_remote_code."""
    from transformers import AutoModelForSequenceClassification

    from app.ml.modeling import export
    from app.ml.modeling_adapt import attention_blocks

    original, tokenizer, meta = load_exported(teacher)
    pruned, _, _ = load_exported(teacher)
    prune_encoder(pruned, heads=0.5).eval()
    ids = {"input_ids": torch.tensor([[101, 2307, 3185, 2001, 102]]),
           "attention_mask": torch.ones(1, 5, dtype=torch.long)}
    size = pruned.encoder.config.hidden_size // pruned.encoder.config.num_attention_heads
    for (a0, o0), (a1, o1) in zip(attention_blocks(original.encoder),
                                  attention_blocks(pruned.encoder)):
        assert a1.num_attention_heads == 1 and a1.query.out_features == size
        kept = [h for h in range(a0.num_attention_heads)
                if torch.equal(a0.value.weight[h * size:(h + 1) * size], a1.value.weight)]
        assert len(kept) == 1  # one whole head, the same in query, key and value
        rows = slice(kept[0] * size, (kept[0] + 1) * size)
        assert torch.equal(a0.query.weight[rows], a1.query.weight)
        assert torch.equal(a0.key.weight[rows], a1.key.weight)
        with torch.no_grad():
            cols = torch.ones(o0.dense.in_features, dtype=torch.bool)
            cols[rows] = False
            o0.dense.weight[:, cols] = 0.0
    with torch.no_grad():
        assert torch.allclose(original(**ids), pruned(**ids), atol=1e-5)
        export(pruned, tokenizer, meta["labels"], tmp_path / "out", {})
        reloaded, _, _ = load_exported(tmp_path / "out")
        assert torch.allclose(reloaded(**ids), pruned(**ids), atol=1e-5)
        remote = AutoModelForSequenceClassification.from_pretrained(
            tmp_path / "out", trust_remote_code=True).eval()
        assert torch.allclose(remote(**ids).logits, pruned(**ids), atol=1e-5)


def test_figures_measure_a_model_beside_its_source(teacher, tmp_path):
    model, _, _ = load_exported(teacher)
    src = figures(teacher, *VAL, latency_examples=5)
    assert src["params"] == parameter_count(model) and src["size_bytes"] > 0
    assert src["accuracy"] >= 0.9 and src["latency_ms_b1"] > 0
    delta = compare({**src, "accuracy": src["accuracy"] - 0.1, "params": src["params"] // 2}, src)
    assert delta["accuracy"] == pytest.approx(-0.1) and delta["params_ratio"] == 0.5


def test_an_image_student_learns_from_a_teacher_of_another_architecture(tmp_path):
    """A resnet18 teacher's cached logits train a mobilenet_v2 student (images: read from the
    dataset's ZIP once for the teacher, then every epoch for the student)."""
    import random
    import zipfile

    from app.ml.data import Splits
    from app.ml.recipe import BaseModelSpec, build_recipe
    from app.ml.vision import load_exported as load_vision
    from conftest import FIXTURES

    src = FIXTURES / "digits" / "digits-train.zip"
    with zipfile.ZipFile(src) as zf:
        members = random.Random(0).sample(sorted(m for m in zf.namelist()
                                                 if not m.endswith("/")), 24)
    labels = sorted({m.split("/")[0] for m in members})
    y = [labels.index(m.split("/")[0]) for m in members]
    splits = Splits(labels, members[:16], y[:16], members[16:], y[16:])

    def run(arch, method, source=None):
        hp = resolve_hyperparameters(method, {"epochs": 1, "batch_size": 8, "image_size": 32},
                                     "image-classification")
        r = build_recipe(TrainConfig(method=method, labels=labels, seed=3, hyperparameters=hp),
                         BaseModelSpec("image-classification", None, arch), splits,
                         work_dir=tmp_path / arch, images_zip=src, source=source,
                         resume_dir=tmp_path / "resume")
        r.setup()
        return r, r.train()

    _, teacher = run("resnet18", "full")
    logits = tmp_path / "resume" / "teacher-logits.safetensors"
    student, result = run("mobilenet_v2", "distill", SourceSpec("distill",
                                                                teacher.best_checkpoint, logits))
    assert student.task.logits.shape == (16, len(labels)) and logits.is_file()
    net, _, meta = load_vision(result.best_checkpoint)
    assert meta["architecture"] == "mobilenet_v2" and meta["method"] == "distill"


def test_channel_pruning_shrinks_an_image_network_and_its_download_reloads_it(tmp_path,
                                                                             monkeypatch):
    """Half of every convolution's channels of a mobilenet_v2 go (depthwise convolutions and batch
    norms follow); the exported checkpoint reloads at the pruned shapes through the service's
    loader and through the snippet its README gives, and both compute what was pruned."""
    import re

    from app.ml import vision
    from app.ml.prune import prune_channels

    torch.manual_seed(0)
    model = vision.VisionClassifier("mobilenet_v2", 3)
    before = parameter_count(model)
    prune_channels(model, 0.5).eval()
    assert parameter_count(model) < 0.5 * before
    convs = [m for m in model.net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].out_channels == 16  # 32, halved
    assert all(m.groups in (1, m.in_channels) for m in convs)  # depthwise stays depthwise
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        want = model(x)
        assert want.shape == (2, 3)
        vision.export(model, ["a", "b", "c"], vision.Preprocess(64), tmp_path, {})
        net, _, meta = vision.load_exported(tmp_path)
        assert meta["channels_pruned"] is True
        assert torch.allclose(net(x), want, atol=1e-5)
        readme = (tmp_path / "README.md").read_text()
        snippet = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
        scope: dict = {}
        monkeypatch.chdir(tmp_path)
        exec(snippet, scope)  # noqa: S102 - the README's own code, run as a user would
        assert torch.allclose(scope["net"](x), want, atol=1e-5)
