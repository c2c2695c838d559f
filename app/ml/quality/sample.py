"""A Sample of a dataset's rows with what the checks need: keys for exact and near-duplicates,
lengths, and the frozen base model's features."""
import hashlib
import zipfile
from pathlib import Path

import imagehash
import numpy as np

from app.ml import vision
from app.ml.feature_cache import FeatureCache
from app.ml.quality import checks, features
from app.ml.quality.report import Sample


def text_sample(model_dir: Path, refs: list[dict], texts: list[str], labels: list[str],
                total: int, *, max_length: int = 128, device: str = "cpu",
                precision: str = "auto", cache: FeatureCache | None = None,
                namespace: str = "") -> Sample:
    """Texts: exact = the text itself, near = the normalised text; features of the texts
    truncated at max_length tokens, as a job's (so they are the feature cache's entries)."""
    full = features.token_ids(model_dir, texts, None)
    feats = features.text_features(model_dir, features.token_ids(model_dir, texts, max_length),
                                   device=device, precision=precision, cache=cache,
                                   namespace=namespace)
    tokens = [len(x) for x in full]
    lengths = {"characters": checks.distribution([len(t) for t in texts]),
               "tokens": {**checks.distribution(tokens), "max_length": max_length,
                          "over_max_length": sum(1 for n in tokens if n > max_length)}}
    return Sample(refs, labels, exact=list(texts), near=[checks.normalize_text(t) for t in texts],
                  features=feats, total=total, lengths=lengths)


def image_sample(arch: str, weights: Path | None, images_zip: Path, refs: list[dict],
                 members: list[str], labels: list[str], total: int, *, device: str = "cpu",
                 cache: FeatureCache | None = None, namespace: str = "") -> Sample:
    """Images: exact = the file's sha256, near = perceptual hashes (pHash), sizes from each
    header; features of the penultimate layer."""
    digests, widths, heights, hashes = [], [], [], []
    with zipfile.ZipFile(images_zip) as zf:
        for member in members:
            data = zf.read(member)
            digests.append(hashlib.sha256(data).hexdigest())
            image = vision.decode_image(data)
            widths.append(image.width)
            heights.append(image.height)
            hashes.append(imagehash.phash(image).hash.flatten())
    feats = features.image_features(arch, weights, images_zip, members, device=device,
                                    cache=cache, namespace=namespace)
    lengths = {"width": checks.distribution(widths), "height": checks.distribution(heights),
               "megapixels": checks.distribution([w * h / 1e6 for w, h in zip(widths, heights,
                                                                              strict=True)])}
    signs = np.where(np.array(hashes, dtype=bool), 1.0, -1.0).astype(np.float32)
    return Sample(refs, labels, exact=digests, near=None, features=feats, total=total,
                  lengths=lengths, hashes=signs)
