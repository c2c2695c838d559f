"""Exported text checkpoints load anywhere or refuse loudly: transformers' Auto classes and
pipeline with trust_remote_code give the service's probabilities; without it they raise; the
sentence-transformers layout gives the encoder's embeddings; the old layout (encoder directory +
head.safetensors) still loads for predict."""
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForSequenceClassification, pipeline

from app.ml import modeling

TEXTS = ["superb great film", "dull boring film", "x", "a long " * 20 + "text"]


def classifier(tiny_model: Path, method: str = "full", normalize: bool = False,
               pooling: str = "mean") -> modeling.TextClassifier:
    torch.manual_seed(0)
    hp = {"dropout": 0.1, "lora_rank": 4, "lora_alpha": 8, "lora_dropout": 0.0}
    model = modeling.build_classifier(tiny_model, ["bad", "good", "meh"], method, hp)
    model.pooling, model.normalize = pooling, normalize
    model.scale = 32 ** 0.5 if normalize else 1.0
    torch.nn.init.normal_(model.head.weight, std=1.0)  # far from uniform probabilities
    if method == "lora":  # adapters start at zero: move them so merging matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.5)
    return model.eval()


def service_probs(path: Path) -> torch.Tensor:
    model, tok, _ = modeling.load_exported(path)
    batch = tok(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(batch["input_ids"], batch["attention_mask"]).softmax(-1)


@pytest.mark.parametrize("method,normalize,pooling", [("full", False, "mean"),
                                                      ("lora", False, "mean"),
                                                      ("head", True, "cls"),
                                                      ("full", False, "max")])
def test_pipeline_with_trust_remote_code_predicts_what_the_service_does(
        tiny_model, tmp_path, method, normalize, pooling):
    model = classifier(tiny_model, method, normalize, pooling)
    modeling.export(model, modeling.load_tokenizer(tiny_model), ["bad", "good", "meh"], tmp_path,
                    {"max_length": 128})
    assert json.loads((tmp_path / "config.json").read_text())["model_type"] == "adapt-text-classifier"
    ours = service_probs(tmp_path)
    clf = pipeline("text-classification", model=str(tmp_path), trust_remote_code=True)
    got = clf(TEXTS, top_k=None)
    for row, probs in zip(got, ours, strict=True):
        scores = {r["label"]: r["score"] for r in row}
        for i, label in enumerate(["bad", "good", "meh"]):
            assert abs(scores[label] - probs[i].item()) < 1e-5
    hf = AutoModelForSequenceClassification.from_pretrained(tmp_path, trust_remote_code=True)
    batch = modeling.load_tokenizer(tmp_path)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(hf(**batch).logits.softmax(-1), ours, atol=1e-5)
    assert ours.max(-1).values.min() > 0.4  # not ~1/3 everywhere: the head was loaded


def test_loading_without_trust_remote_code_raises(tiny_model, tmp_path):
    modeling.export(classifier(tiny_model), modeling.load_tokenizer(tiny_model),
                    ["bad", "good", "meh"], tmp_path, {})
    with pytest.raises(ValueError, match="trust_remote_code"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)
    with pytest.raises(ValueError, match="trust_remote_code"):
        pipeline("text-classification", model=str(tmp_path))


def test_sentence_transformers_gives_the_encoders_embeddings(tiny_model, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    model = classifier(tiny_model, normalize=True)
    modeling.export(model, modeling.load_tokenizer(tiny_model), ["bad", "good", "meh"], tmp_path,
                    {"max_length": 128})
    emb = st.SentenceTransformer(str(tmp_path), trust_remote_code=True).encode(
        TEXTS, convert_to_tensor=True)
    batch = modeling.load_tokenizer(tmp_path)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        feats = model.features(batch["input_ids"], batch["attention_mask"]) / model.scale
    assert torch.allclose(emb.cpu(), feats, atol=1e-5)


def test_checkpoints_of_the_old_layout_still_load_for_predict(tiny_model, tmp_path):
    """Before: the encoder's own directory (config.json of its type) + head.safetensors."""
    model = classifier(tiny_model)
    model.encoder.config.id2label = {0: "bad", 1: "good", 2: "meh"}
    model.encoder.save_pretrained(tmp_path)
    modeling.load_tokenizer(tiny_model).save_pretrained(tmp_path)
    save_file({k: v.contiguous() for k, v in model.head.state_dict().items()},
              str(tmp_path / "head.safetensors"))
    (tmp_path / "adapt.json").write_text(json.dumps({
        "task": "text-classification", "labels": ["bad", "good", "meh"], "pooling": "mean",
        "normalize": False, "scale": 1.0}))
    batch = modeling.load_tokenizer(tiny_model)(TEXTS, padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"]).softmax(-1)
    assert torch.allclose(service_probs(tmp_path), expected, atol=1e-6)
