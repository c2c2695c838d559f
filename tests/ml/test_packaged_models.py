"""The base models shipped in packages load offline and behave as their training made them:
all-mpnet-base-v2 (reassembled from five packages) embeds paraphrases closer than unrelated
sentences; EfficientNet-Lite0 recognises a giant panda, with its own (127/128) normalisation."""
import json

import pytest
import torch
from torch.nn.functional import cosine_similarity

from app.base_models import catalog, packaged
from app.config import get_settings
from app.ml import modeling, vision
from app.ml.config import resolve_hyperparameters
from app.ml.modeling import base_model_parameters

from conftest import FIXTURES

GIANT_PANDA = 388  # ImageNet-1k class index


def test_catalog_lists_both_with_size_and_license():
    listed = {e["id"]: e for e in (x.to_api() for x in catalog.list_entries(get_settings()))}
    for model_id in ("mpnet-base-v2", "efficientnet-lite0-imagenet", "minilm-l6-v2",
                     "mobilenet-v2-imagenet"):
        assert listed[model_id]["source"] == "bundled"
        assert listed[model_id]["license"]
        assert listed[model_id]["parameters"] > 1_000_000
    assert listed["efficientnet-lite0-imagenet"]["task"] == "image-classification"
    assert listed["mpnet-base-v2"]["task"] == "text-classification"


def test_mpnet_is_reassembled_and_embeds_paraphrases_closer():
    entry = catalog.resolve(get_settings(), "mpnet-base-v2")
    path = entry.local_path()
    assert base_model_parameters(path) == entry.parameters == packaged.MPNET_PARAMETERS
    assert json.loads((path / "config.json").read_text())["model_type"] == "mpnet"
    assert modeling.detect_pooling(path) == ("mean", True)  # as sentence-transformers trained it
    model = modeling.build_classifier(path, ["a", "b"], "head",
                                      resolve_hyperparameters("head", {})).eval()
    tok = modeling.load_tokenizer(path)
    sentences = ["A man is playing a guitar.", "Someone strums a guitar on stage.",
                 "The stock market fell sharply today."]
    batch = tok(sentences, padding=True, return_tensors="pt")
    with torch.no_grad():
        emb = model.features(batch["input_ids"], batch["attention_mask"])
    assert torch.allclose(emb.norm(dim=1), torch.full((3,), model.scale), rtol=1e-4)
    para = cosine_similarity(emb[0], emb[1], dim=0)
    unrelated = max(cosine_similarity(emb[0], emb[2], dim=0),
                    cosine_similarity(emb[1], emb[2], dim=0))
    assert para > 0.5 > unrelated


def test_efficientnet_lite0_recognises_a_giant_panda_with_its_own_normalisation():
    entry = catalog.resolve(get_settings(), "efficientnet-lite0-imagenet")
    net = vision.ARCHITECTURES["efficientnet_lite0"].build(weights=None, num_classes=1000)
    net.load_state_dict(vision.load_weights(entry.local_path()))
    net.eval()
    image = vision.decode_image((FIXTURES / "images" / "giant-panda.jpg").read_bytes())

    def panda_probability(pre: vision.Preprocess) -> tuple[int, float]:
        with torch.no_grad():
            p = net(pre.eval_transform()(image)[None]).softmax(-1)[0]
        return int(p.argmax()), float(p[GIANT_PANDA])

    top, own = panda_probability(vision.preprocess_for("efficientnet_lite0", 224))
    assert top == GIANT_PANDA and own > 0.8
    # ImageNet mean/std, which the package's README copies from EfficientNet-B*, is not what
    # these weights were trained on: the same image is far less certain
    _, imagenet = panda_probability(vision.Preprocess(224))
    assert imagenet < own - 0.2


@pytest.mark.parametrize("method,trainable", [("head", {"_fc"}), ("partial", {"_fc", "_blocks",
                                                                              "_conv_head",
                                                                              "_bn1"}),
                                              ("full", None)])
def test_efficientnet_lite0_methods_train_what_they_say(method, trainable):
    entry = catalog.resolve(get_settings(), "efficientnet-lite0-imagenet")
    model = vision.VisionClassifier("efficientnet_lite0", 3, vision.load_weights(
        entry.local_path()))
    model = vision.apply_method(model, method, {"unfreeze_layers": 2})
    tops = {n.split(".")[1] for n, p in model.named_parameters() if p.requires_grad}
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 3)
    if trainable is None:
        assert all(p.requires_grad for p in model.parameters())
    else:
        assert tops == trainable
    if method == "partial":  # the last MBConv block and the head convolution, not the stem
        assert not any(p.requires_grad for p in model.net._blocks[0].parameters())
        assert all(p.requires_grad for p in model.net._blocks[-1].parameters())


def test_an_efficientnet_lite0_checkpoint_exports_to_onnx_with_its_normalisation(tmp_path):
    import onnxruntime as ort

    from app.ml.onnx_export import export_onnx

    entry = catalog.resolve(get_settings(), "efficientnet-lite0-imagenet")
    model = vision.VisionClassifier("efficientnet_lite0", 3, vision.load_weights(
        entry.local_path())).eval()
    pre = vision.preprocess_for("efficientnet_lite0", 96)
    vision.export(model, ["a", "b", "c"], pre, tmp_path / "ckpt", {})
    onnx_path = export_onnx(tmp_path / "ckpt", tmp_path / "onnx", None)
    preprocess = json.loads((tmp_path / "onnx" / "preprocess.json").read_text())
    assert preprocess["mean"] == pytest.approx([127 / 255] * 3)
    pixels = pre.eval_transform()(vision.decode_image(
        (FIXTURES / "images" / "giant-panda.jpg").read_bytes()))[None]
    with torch.no_grad():
        expected = model(pixels).numpy()
    got = ort.InferenceSession(str(onnx_path)).run(None, {"pixel_values": pixels.numpy()})[0]
    assert got == pytest.approx(expected, abs=1e-4)
