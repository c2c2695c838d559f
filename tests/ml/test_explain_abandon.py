"""An explanation given a Passes stops before its next forward/backward pass once its stop event
is set (the model server sets it when the caller hangs up), and leaves the network as it was:
the next explanation equals one on an untouched copy."""
import copy

import numpy as np
import pytest
import torch
from PIL import Image

from app.ml import explain, vision
from app.ml.explain import Abandoned, Passes, explain_images

IMAGES = [Image.new("RGB", (40 + 5 * i, 30), (60 * i, 255 - 40 * i, 90)) for i in range(4)]


def test_an_image_explanation_stops_before_its_next_pass_and_leaves_the_network_as_it_was(
        monkeypatch):
    monkeypatch.setattr(explain, "PIXELS_PER_PASS", 16 * 32 * 32)  # passes of 16 rows at 32 px
    torch.manual_seed(0)
    net = vision.VisionClassifier("mobilenet_v2", 3).net.eval()
    untouched, pre = copy.deepcopy(net), vision.Preprocess(32)
    passes = Passes()

    def hang_up(*_):  # during the first gradient pass (the probabilities were pass 1)
        if passes.done == 2:
            passes.stop.set()

    # 4 images × 16 steps: the probabilities, then 4 passes of 16 rows
    hook = net.register_forward_hook(hang_up)
    try:
        with pytest.raises(Abandoned, match="stopped after 2 passes"):
            explain_images(net, pre, IMAGES, [None] * 4, steps=16, passes=passes)
    finally:
        hook.remove()
    assert passes.done == 2
    counted = Passes()
    again = explain_images(net, pre, IMAGES, [None, 1, None, 2], steps=4, passes=counted)
    want = explain_images(untouched, pre, IMAGES, [None, 1, None, 2], steps=4)
    assert counted.done == 2  # the probabilities and one pass of 16 rows
    for got, ref in zip(again, want, strict=True):
        assert got.target == ref.target and torch.equal(got.probs, ref.probs)
        assert np.allclose(got.heatmap, ref.heatmap, atol=1e-6)
