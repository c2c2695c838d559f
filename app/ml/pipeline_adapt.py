"""pipeline("text-classification") for the classifier, shipped inside every exported text
checkpoint beside modeling_adapt.py: config.json's `custom_pipelines` names this class, so
`pipeline("text-classification", model=path, trust_remote_code=True)` uses it in place of
transformers' own. It reads texts as the service's predict does — cut at the model's max_length,
or (a model trained with chunking) in overlapping windows whose logits are averaged per text —
and answers in text-classification's usual form (label and score; top_k as usual).

Self-contained on purpose (torch, transformers and modeling_adapt.py): this file is copied as it is.
"""
import torch
from transformers.pipelines import TextClassificationPipeline
from transformers.pipelines.base import ChunkPipeline

from .modeling_adapt import window_texts


class AdaptTextClassificationPipeline(ChunkPipeline, TextClassificationPipeline):
    """Each text's windows are the chunks (a ChunkPipeline batches them across texts); once a
    text's last window has run, the mean of its windows' logits is scored as
    TextClassificationPipeline scores logits (softmax, top_k). Tokenizer arguments are ignored:
    the windows are the ones the model was trained with."""

    def preprocess(self, inputs, **tokenizer_kwargs):
        if not isinstance(inputs, str):
            raise ValueError("this model classifies single texts, not text pairs")
        ids, _ = window_texts(self.tokenizer, [inputs], self.model.config)
        for i, window in enumerate(ids):
            yield {"input_ids": torch.tensor([window]),
                   "attention_mask": torch.ones(1, len(window), dtype=torch.long),
                   "is_last": i == len(ids) - 1}

    def _forward(self, model_inputs):
        is_last = model_inputs.pop("is_last")
        return {"logits": self.model(**model_inputs).logits, "is_last": is_last}

    def postprocess(self, model_outputs, **kwargs):
        logits = torch.cat([out["logits"] for out in model_outputs]).mean(0, keepdim=True)
        return super().postprocess({"logits": logits}, **kwargs)
