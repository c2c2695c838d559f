"""Parameter sharing on the tiny model: head models load one backbone and add only their head,
LoRA models only their adapter; shared predictions equal the whole copies', and a mixed-adapter
batch equals each model run on its own. Models whose tokenizers differ do not share. Image head
models share their frozen network and add only their head; a fan-out runs it once."""
import json
import shutil

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification
from test_recipe import make_recipe

from app.ml import sharing, vision
from app.models_api import batching
from app.models_api.inference import (Backbones, ImagePredictor, ModelCache, Predictor,
                                      SharedImagePredictor, SharedPredictor, load_predictor,
                                      loaded_memory, run_many)

TEXTS = ["superb great film", "dull boring film", "a wonderful delightful story",
         "tedious", "terrible awful dull boring film again and again"]


@pytest.fixture(scope="module")
def trained(tiny_model, tmp_path_factory):
    """One head model and two LoRA models (different seeds) on the tiny base."""
    root = tmp_path_factory.mktemp("shared")
    out = {}
    for name, method, seed in (("head", "head", 1), ("lora_a", "lora", 2), ("lora_b", "lora", 3)):
        hp = {"lora_rank": 4} if method == "lora" else {}
        recipe = make_recipe(tiny_model, root / name, method=method, seed=seed, epochs=1, **hp)
        recipe.train()
        out[name] = recipe.save_checkpoint()
    return out


def other_head(src, dst, seed: int):
    """A copy of a head checkpoint with another random head: the real export format."""
    shutil.copytree(src, dst)
    weights = load_file(str(dst / "model.safetensors"))
    gen = torch.Generator().manual_seed(seed)
    weights["head.weight"] = torch.randn(weights["head.weight"].shape, generator=gen)
    save_file(weights, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return dst


def test_export_records_the_base_encoder_and_keeps_the_lora_adapter(trained):
    head = json.loads((trained["head"] / "adapt.json").read_text())["sharing"]
    lora = json.loads((trained["lora_a"] / "adapt.json").read_text())["sharing"]
    assert head["kind"] == "head" and lora["kind"] == "lora"
    # the frozen encoder is the base one: a LoRA model's base has the same fingerprint
    assert head["encoder_fingerprint"] == lora["base_fingerprint"]
    assert head["encoder_fingerprint"] == sharing.file_fingerprint(
        trained["head"] / "model.safetensors")
    assert (trained["lora_a"] / "adapter" / "adapter_model.safetensors").is_file()
    assert not any("lora" in k for k in load_file(str(trained["lora_a"] / "model.safetensors")))


def test_head_models_share_one_backbone_and_add_only_their_head(trained, tmp_path):
    shared = Backbones()
    cache = ModelCache(size=10, load=lambda p: load_predictor(p, backbones=shared))
    first = cache.get("m0", trained["head"])
    assert isinstance(first, SharedPredictor)
    one = cache.nbytes()
    for i in range(1, 5):
        cache.get(f"m{i}", other_head(trained["head"], tmp_path / f"m{i}", i))
    head_bytes = sum(t.numel() * 4 for t in first.model.head.parameters())
    assert cache.nbytes() == one + 4 * head_bytes
    assert len(shared.loaded()) == 1
    assert one == Predictor(trained["head"]).nbytes()  # the backbone and one head: one model
    cache.clear()
    assert shared.loaded() == []  # the last model gone, its backbone goes too


def other_tokenizer(src, dst):
    """A copy of a checkpoint whose tokenizer gives two words each other's ids: the same encoder
    weights, another tokenization (as a base whose tokenizer files were changed)."""
    shutil.copytree(src, dst)
    tok = json.loads((dst / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["superb"], vocab["dull"] = vocab["dull"], vocab["superb"]
    (dst / "tokenizer.json").write_text(json.dumps(tok))
    return dst


def test_models_on_one_encoder_with_different_tokenizers_share_nothing(trained, tmp_path):
    backbones = Backbones()
    own = load_predictor(trained["head"], backbones=backbones)
    other_path = other_tokenizer(trained["head"], tmp_path / "other")
    other = load_predictor(other_path, backbones=backbones)
    assert isinstance(other, SharedPredictor) and other.backbone is not own.backbone
    assert len(backbones.loaded()) == 2
    together = run_many([own, other], TEXTS, top_k=2)
    with torch.inference_mode():
        alone = [Predictor(p).probabilities(TEXTS) for p in (trained["head"], other_path)]
        assert not torch.allclose(alone[0], alone[1], atol=1e-3)  # the tokenizers do differ
        for model, want, fanned in zip((own, other), alone, together, strict=True):
            assert torch.allclose(model.probabilities(TEXTS), want, atol=1e-5)
            assert [p["score"] for p in fanned] == pytest.approx(
                want.max(-1).values.tolist(), abs=1e-5)


def test_tokenizer_files_saved_from_elsewhere_still_share(trained, tmp_path):
    """tokenizer_config.json's keys that only say where it was read from do not count."""
    path = other_head(trained["head"], tmp_path / "moved", 5)
    config = json.loads((path / "tokenizer_config.json").read_text())
    config |= {"is_local": not config.get("is_local", True), "name_or_path": "/elsewhere"}
    (path / "tokenizer_config.json").write_text(json.dumps(config, indent=4))
    backbones = Backbones()
    first = load_predictor(trained["head"], backbones=backbones)
    assert load_predictor(path, backbones=backbones).backbone is first.backbone
    assert sharing.tokenizer_fingerprint(path) == sharing.tokenizer_fingerprint(trained["head"])


def test_a_tampered_encoder_loads_as_a_whole_copy(trained, tmp_path):
    path = shutil.copytree(trained["head"], tmp_path / "tampered")
    weights = load_file(str(path / "model.safetensors"))
    key = next(k for k in weights if k.startswith("encoder.") and k.endswith("query.weight"))
    weights[key] = weights[key] + 0.01
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    assert type(load_predictor(path, backbones=Backbones())) is Predictor


@pytest.mark.parametrize("name", ["head", "lora_a"])
def test_shared_predictions_equal_the_whole_copy(trained, name):
    shared = load_predictor(trained[name], backbones=Backbones())
    assert isinstance(shared, SharedPredictor)
    whole = Predictor(trained[name])
    with torch.inference_mode():
        assert torch.allclose(shared.probabilities(TEXTS), whole.probabilities(TEXTS), atol=1e-5)


def test_a_mixed_lora_batch_equals_one_at_a_time(trained, tmp_path):
    backbones = Backbones()
    models = [load_predictor(p, backbones=backbones) for p in (
        trained["lora_a"], trained["head"], trained["lora_b"],
        other_head(trained["head"], tmp_path / "h2", 9))]
    assert all(isinstance(m, SharedPredictor) for m in models)
    assert len(backbones.loaded()) == 1
    together = run_many(models, TEXTS, top_k=2)
    alone = [run_many([m], TEXTS, top_k=2)[0] for m in models]
    for got, want in zip(together, alone, strict=True):
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert torch.allclose(torch.tensor([[s["score"] for s in p["top"]] for p in got]),
                              torch.tensor([[s["score"] for s in p["top"]] for p in want]),
                              atol=1e-5)
    # and the adapter rows are the LoRA model's own answers: its merged whole copy's
    whole = run_many([Predictor(trained["lora_a"])], TEXTS, top_k=2)[0]
    assert torch.allclose(torch.tensor([p["score"] for p in together[0]]),
                          torch.tensor([p["score"] for p in whole]), atol=1e-5)


def test_a_lora_model_whose_weights_are_not_on_the_base_loads_as_a_whole_copy(trained, tmp_path):
    backbones = Backbones()
    load_predictor(trained["head"], backbones=backbones)
    path = shutil.copytree(trained["lora_a"], tmp_path / "lora")
    weights = load_file(str(path / "model.safetensors"))
    key = next(k for k in weights if k.startswith("encoder.") and "embeddings" in k)
    weights[key] = weights[key] + 0.01
    save_file(weights, str(path / "model.safetensors"), metadata={"format": "pt"})
    assert type(load_predictor(path, backbones=backbones)) is Predictor
    assert isinstance(load_predictor(trained["lora_a"], backbones=backbones), SharedPredictor)


def test_a_model_that_fails_to_load_leaves_no_backbone_behind(trained, tmp_path):
    path = shutil.copytree(trained["head"], tmp_path / "broken")
    meta = json.loads((path / "adapt.json").read_text())
    (path / "adapt.json").write_text(json.dumps({**meta, "labels": ["a", "b", "c"]}))
    backbones = Backbones()
    with pytest.raises(RuntimeError):
        SharedPredictor(path, backbones=backbones)
    assert backbones.loaded() == []


def test_requests_for_different_models_on_one_backbone_run_as_one_mixed_batch(trained):
    backbones = Backbones()
    models = [load_predictor(p, backbones=backbones)
              for p in (trained["lora_a"], trained["head"], trained["lora_b"])]
    for m in models:
        m.start_batching(max_batch=3 * len(TEXTS), max_wait_s=30.0, name="t")
    with batching.incoming():  # one more request on its way: the batcher waits for the rest
        futures = [m.batcher.submit(TEXTS, 2) for m in models]
    answers = [f.result(timeout=60) for f in futures]
    assert models[0].backbone.batcher.batches == 1  # all three requests in one forward pass
    for m, got in zip(models, answers, strict=True):
        want = run_many([m], TEXTS, top_k=2)[0]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert torch.allclose(torch.tensor([[s["score"] for s in p["top"]] for p in got]),
                              torch.tensor([[s["score"] for s in p["top"]] for p in want]),
                              atol=1e-5)
    for m in models:
        m.close()
    assert backbones.loaded() == []


def test_a_lora_checkpoint_still_loads_with_plain_transformers(trained):
    hf = AutoModelForSequenceClassification.from_pretrained(trained["lora_a"],
                                                            trust_remote_code=True).eval()
    shared = load_predictor(trained["lora_a"], backbones=Backbones())
    batch = shared.tokenizer(TEXTS, padding=True, return_tensors="pt")
    with torch.inference_mode():
        library = hf(**batch).logits.softmax(-1)  # already ÷ the calibration temperature
        assert torch.allclose(library, shared.probabilities(TEXTS), atol=1e-5)


def test_a_base_rebuilt_from_lora_weights_is_made_exact_by_a_head_model(trained):
    backbones = Backbones()
    lora = load_predictor(trained["lora_a"], backbones=backbones)
    assert not lora.backbone.exact  # merged weights less the adapter: the base up to rounding
    head = load_predictor(trained["head"], backbones=backbones)
    assert head.backbone is lora.backbone and lora.backbone.exact
    saved = load_file(str(trained["head"] / "model.safetensors"))
    assert all(torch.equal(v, saved[f"encoder.{k}"])
               for k, v in lora.backbone.encoder.state_dict().items())
    with torch.inference_mode():
        assert torch.allclose(lora.probabilities(TEXTS),
                              Predictor(trained["lora_a"]).probabilities(TEXTS), atol=1e-5)


def whole_copy(src, dst):
    """A head checkpoint without its sharing record: it loads as a whole model."""
    shutil.copytree(src, dst)
    meta = json.loads((dst / "adapt.json").read_text())
    meta.pop("sharing")
    (dst / "adapt.json").write_text(json.dumps(meta))
    return dst


def test_the_cache_counts_a_backbone_once_however_many_models_share_it(trained, tmp_path):
    backbones = Backbones()
    cache = ModelCache(size=2, load=lambda p: load_predictor(p, backbones=backbones))
    for i in range(4):
        cache.get(f"h{i}", other_head(trained["head"], tmp_path / f"h{i}", i))
    assert type(cache.get("w1", whole_copy(trained["head"], tmp_path / "w1"))) is Predictor
    assert len(cache) == 5  # two encoders: the backbone of four heads, and one whole model
    cache.get("w2", whole_copy(trained["head"], tmp_path / "w2"))
    # a third encoder: the least recently used go until two are left (all four heads)
    assert [key for key, _, _ in cache.loaded()] == ["w1", "w2"]
    assert backbones.loaded() == []


def test_models_reading_long_texts_in_windows_answer_as_their_whole_copies(trained, tmp_path):
    paths = []
    for name in ("head", "lora_a"):
        path = shutil.copytree(trained[name], tmp_path / name)
        meta = json.loads((path / "adapt.json").read_text())
        meta |= {"max_length": 8, "chunking": {"overlap": 2, "max_chunks": 4}}
        (path / "adapt.json").write_text(json.dumps(meta))
        paths.append(path)
    texts = TEXTS + [" ".join(["superb great wonderful film"] * 6)]
    backbones = Backbones()
    models = [load_predictor(p, backbones=backbones) for p in paths]
    together = run_many(models, texts, top_k=2)
    for m in models:
        m.start_batching(max_batch=64, max_wait_s=0.0, name="t")
    for path, fan, m in zip(paths, together, models, strict=True):
        whole = run_many([Predictor(path)], texts, top_k=2)[0]
        batched = m.batcher.submit(texts, 2).result(timeout=60)
        for got in (fan, batched):
            assert torch.allclose(torch.tensor([p["score"] for p in got]),
                                  torch.tensor([p["score"] for p in whole]), atol=1e-5)
    for m in models:
        m.close()


# --- image head models: the frozen network without its head is the backbone -------------------

IMAGES = [Image.new("RGB", (40 + 3 * i, 30), (37 * i % 256, 255 - 29 * i, 11 * i)) for i in range(6)]


def image_model(root, name: str, base: dict, method: str = "head", seed: int = 0,
                labels: int = 3, size: int = 32):
    """An exported image model on the `base` network (its own random head), as a job exports."""
    torch.manual_seed(seed)
    model = vision.apply_method(vision.VisionClassifier("mobilenet_v2", labels, base), method,
                                {"unfreeze_layers": 2})
    if method != "head":  # a partial or full model's network is its own
        with torch.no_grad():
            vision.ARCHITECTURES["mobilenet_v2"].blocks(model.net)[-1].apply(
                lambda m: m.weight.add_(0.01) if isinstance(m, torch.nn.Conv2d) else None)
    vision.export(model, [f"c{i}" for i in range(labels)], vision.Preprocess(size),
                  root / name, {"method": method})
    return root / name


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict:
    """Four head models on one (random) base network, one of them preprocessing to 40 px, and a
    partial and a full model on it."""
    root = tmp_path_factory.mktemp("images")
    torch.manual_seed(0)
    base = vision.VisionClassifier("mobilenet_v2", 5).net.state_dict()
    out = {f"head{i}": image_model(root, f"head{i}", base, seed=i, labels=3 + i) for i in range(3)}
    out["head40"] = image_model(root, "head40", base, seed=7, size=40)
    out |= {m: image_model(root, m, base, method=m, seed=9) for m in ("partial", "full")}
    return out


def _scores(found: list[dict]) -> torch.Tensor:
    return torch.tensor([[t["score"] for t in p["top"]] for p in found])


def test_image_head_models_share_one_backbone_and_add_only_their_head(images):
    backbones = Backbones()
    cache = ModelCache(size=10, load=lambda p: load_predictor(p, backbones=backbones))
    heads = ["head0", "head1", "head2", "head40"]
    loaded = [cache.get(name, images[name]) for name in heads]
    assert all(type(p) is SharedImagePredictor for p in loaded)
    assert len(backbones.loaded()) == 1 and cache.encoders() == 1
    whole = [ImagePredictor(images[name]) for name in heads]
    head_bytes = sum(p.nbytes() for p in loaded)
    assert head_bytes < whole[0].nbytes() / 100
    assert cache.nbytes() == backbones.loaded()[0].nbytes() + head_bytes
    assert cache.nbytes() < 1.1 * whole[0].nbytes()  # four models in the memory of one
    [(labels, _)], own = loaded_memory(cache)
    assert labels["base_model"] == "mobilenet_v2" and {m["kind"] for m, _ in own} == {"head"}
    with torch.inference_mode():
        for shared, alone in zip(loaded, whole, strict=True):
            assert torch.allclose(shared.probabilities(IMAGES), alone.probabilities(IMAGES),
                                  atol=1e-5)
    cache.clear()
    assert backbones.loaded() == []


def test_partial_and_full_image_models_stay_whole_copies(images):
    backbones = Backbones()
    assert type(load_predictor(images["partial"], backbones=backbones)) is ImagePredictor
    assert type(load_predictor(images["full"], backbones=backbones)) is ImagePredictor
    assert backbones.loaded() == []
    meta = json.loads((images["head0"] / "adapt.json").read_text())["sharing"]
    assert meta == {"kind": "head", "encoder_fingerprint": vision.backbone_fingerprint(
        images["head0"] / "model.safetensors", "mobilenet_v2")}
    assert "sharing" not in json.loads((images["partial"] / "adapt.json").read_text())


def test_an_image_head_checkpoint_without_a_record_shares_and_a_tampered_one_does_not(
        images, tmp_path):
    old = shutil.copytree(images["head1"], tmp_path / "old")
    meta = json.loads((old / "adapt.json").read_text())
    meta.pop("sharing")  # exported before image models shared: the method says head
    (old / "adapt.json").write_text(json.dumps(meta))
    tampered = shutil.copytree(images["head2"], tmp_path / "tampered")
    weights = load_file(str(tampered / "model.safetensors"))
    weights["features.0.0.weight"] += 0.01
    save_file(weights, str(tampered / "model.safetensors"))
    backbones = Backbones()
    first = load_predictor(images["head0"], backbones=backbones)
    assert load_predictor(old, backbones=backbones).backbone is first.backbone
    assert type(load_predictor(tampered, backbones=backbones)) is ImagePredictor
    assert len(backbones.loaded()) == 1


def test_an_image_fan_out_runs_the_network_once_and_answers_as_one_at_a_time(images):
    backbones = Backbones()
    names = ["head0", "partial", "head1", "head2", "head40"]
    models = [load_predictor(images[n], backbones=backbones) for n in names]
    passes = []
    models[0].backbone.encoder.register_forward_hook(lambda *_: passes.append(1))
    together = run_many(models, IMAGES, top_k=2)
    assert len(passes) == 2  # the three 32 px heads in one pass, the 40 px head in another
    for name, got in zip(names, together, strict=True):
        want = run_many([ImagePredictor(images[name])], IMAGES, top_k=2)[0]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert torch.allclose(_scores(got), _scores(want), atol=1e-5)


def test_single_image_predicts_for_models_on_one_backbone_run_as_one_batch(images):
    backbones = Backbones()
    names = ["head0", "head1", "head40"]
    models = [load_predictor(images[n], backbones=backbones) for n in names]
    for m in models:
        m.start_batching(max_batch=64, max_wait_s=30.0, name="t")
    with batching.incoming():  # one more request on its way: the batcher waits for the rest
        futures = [m.batcher.submit(IMAGES[i:], 2) for i, m in enumerate(models)]
    answers = [f.result(timeout=60) for f in futures]
    assert models[0].backbone.batcher.batches == 1
    for i, (name, got) in enumerate(zip(names, answers, strict=True)):
        want = run_many([ImagePredictor(images[name])], IMAGES[i:], top_k=2)[0]
        assert [p["label"] for p in got] == [p["label"] for p in want]
        assert torch.allclose(_scores(got), _scores(want), atol=1e-5)
    for m in models:
        m.close()
    assert backbones.loaded() == []
