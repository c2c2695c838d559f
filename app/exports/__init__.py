"""Exports: a model converted to ONNX (optionally int8 or fp16), built and measured by a worker."""
