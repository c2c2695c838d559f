"""What the GPU training path changes, guarded on the CPU (issue 12): token lengths padded to the
GPU's multiple (few distinct shapes), padding that changes no result, and no host sync per step
(the running loss stays on the device until a callback reads it)."""
import pytest
import torch

from app.ml import data as D
from app.ml import tasks
from app.ml.callbacks import Callback
from app.ml.precision import pad_multiple
from test_recipe import make_recipe


def test_batches_pad_to_the_multiple_and_mask_the_padding():
    batch = D.collate([[5, 6, 7], [8]], pad_id=0, multiple=16)
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [3, 1]
    assert batch["input_ids"][0, :4].tolist() == [5, 6, 7, 0]
    assert D.collate([[1] * 17], 0, 16)["input_ids"].shape == (1, 32)
    assert D.collate([[1] * 17], 0)["input_ids"].shape == (1, 17)  # the CPU's: as long as needed
    assert pad_multiple("cuda:1") == 16 and pad_multiple("cuda") == 16
    assert pad_multiple("cpu") == 1


@pytest.fixture
def padded(monkeypatch):
    """The text task as it prepares on a GPU: lengths padded to 16."""
    monkeypatch.setattr(tasks, "pad_multiple", lambda device: 16)


def test_a_gpu_job_sees_few_shapes_and_the_same_predictions(tiny_model, tmp_path, padded):
    r = make_recipe(tiny_model, tmp_path, epochs=1)
    widths = {inputs["input_ids"].shape[1] for inputs, _ in r.task.train_batches(1)}
    widths |= {inputs["input_ids"].shape[1] for _, inputs, _ in r.task.eval_batches()}
    assert widths and all(w % 16 == 0 for w in widths)
    # the padded positions are masked: the model's logits are those of the unpadded batch
    r.model.eval()
    inputs, _ = next(r.task.train_batches(1))
    n = int(inputs["attention_mask"].sum(1).max())
    with torch.no_grad():
        padded_logits = r.model(**inputs)
        plain = r.model(**{k: v[:, :n] for k, v in inputs.items()})
    assert n < inputs["input_ids"].shape[1]
    torch.testing.assert_close(padded_logits, plain, atol=1e-5, rtol=1e-5)


class CountSyncs(Callback):
    """Counts the host reads of a tensor (item, float) between one step's end and the next; a
    progress report every 5 steps reads the running loss (not counted: that is its one sync)."""

    def __init__(self):
        self.reads, self.per_step, self.losses = 0, [], []
        self._item, self._float = torch.Tensor.item, torch.Tensor.__float__

    def _count(self, on: bool) -> None:
        if not on:
            torch.Tensor.item, torch.Tensor.__float__ = self._item, self._float
            return
        item, as_float = self._item, self._float

        def counted_item(t):
            self.reads += 1
            return item(t)

        def counted_float(t):
            self.reads += 1
            return as_float(t)

        torch.Tensor.item, torch.Tensor.__float__ = counted_item, counted_float

    def on_train_begin(self, state, control):
        self._count(True)

    def on_step_end(self, state, control):
        self.per_step.append(self.reads)
        self.reads = 0
        if state.step % 5 == 0:
            self._count(False)
            self.losses.append(state.train_loss)
            self._count(True)

    def on_train_end(self, state, control):
        self._count(False)


def test_training_steps_never_wait_for_the_device(tiny_model, tmp_path):
    counter = CountSyncs()
    r = make_recipe(tiny_model, tmp_path, epochs=2, callbacks=[counter])
    # AdamW's CPU implementation reads each parameter's step count (.item(), no sync on a CPU);
    # on CUDA the recipe uses the fused one, which reads nothing: the optimizer's step is left out
    r.optimizer.register_step_pre_hook(lambda *_: counter._count(False))
    r.optimizer.register_step_post_hook(lambda *_: counter._count(True))
    try:
        result = r.train()
    finally:
        counter._count(False)
    assert len(counter.per_step) == result.state.step == 24 == 2 * r.steps_per_epoch
    # a step's reads: none, but for the first of the second epoch (the first one's evaluation
    # and checkpoint ran before it)
    assert counter.per_step[:12] == [0] * 12 and counter.per_step[13:] == [0] * 11
    # the loss a progress report reads is the epoch's running mean, as before
    assert len(counter.losses) == 4 and all(loss > 0 for loss in counter.losses)
    assert result.state.history[0]["train_loss"] > result.state.history[1]["train_loss"]
