"""Stand-in modules for packages the GPU check never uses but the worker imports at start-up
(S3, ONNX export, data-quality reports): too large to travel to the device machine (botocore,
onnx, onnxruntime, scikit-learn, scipy: over 100 MB of wheels). Each name resolves to a class
that raises ImportError when used. benchmarks/gpu_check.sh puts them LAST on PYTHONPATH, so
an installed package always wins.

    python benchmarks/gpu_stubs.py DIR
"""
import sys
from pathlib import Path

MODULES = ["boto3", "boto3.s3", "boto3.s3.transfer", "botocore", "botocore.config",
           "botocore.exceptions", "onnx", "onnxruntime", "onnxruntime.quantization",
           "onnxruntime.transformers", "onnxruntime.transformers.float16", "sklearn",
           "sklearn.linear_model", "sklearn.model_selection", "sklearn.pipeline",
           "sklearn.preprocessing", "scipy", "scipy.sparse", "scipy.sparse.csgraph", "scipy.optimize", "scipy.stats", "scipy.special",
           "sklearn.metrics",
           "datasketch", "imagehash"]
BODY = '''"""A stand-in written by benchmarks/gpu_check.sh: the real package is not on this machine."""
class _Missing(Exception):
    def __init__(self, *a, **k):
        raise ImportError(__name__ + " is a stand-in (benchmarks/gpu_check.sh): not installed here")
def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)
    return type(name, (_Missing,), {})
'''
root = Path(sys.argv[1])
for m in MODULES:
    d = root.joinpath(*m.split("."))
    d.mkdir(parents=True, exist_ok=True)
    (d / "__init__.py").write_text(BODY)
