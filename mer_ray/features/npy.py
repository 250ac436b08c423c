"""MERTools feature folders ↔ the feature store, so teams can bring features they already have.

MERTools writes one utterance-level vector per clip: `features/<model>-UTT/<name>.npy`, shape
`[dim]` (some scripts save `[1, dim]`). Frame-level folders (`-FRM`, `[T, dim]`) are averaged
over time only when asked (`frame_mean=True`): the learners take one vector per clip.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_ray.features.store import FeatureStore

PART_ROWS = 1024   # clips per part file on import


def import_npy(folder: str | Path, store: FeatureStore, stream: str, *, frame_mean: bool = False,
               names: set[str] | None = None) -> int:
    """Read every `<name>.npy` of a MERTools folder into `stream`; returns the number imported.

    Every vector must have the same size; a bad file raises naming it. Names already stored in
    the stream are replaced by a rerun's parts (the store keeps the last copy of a name).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; expected MERTools features/<model>-UTT/")
    files = sorted(p for p in folder.glob("*.npy") if names is None or p.stem in names)
    if not files:
        raise FileNotFoundError(f"{folder}: no .npy files (expected <clip name>.npy per clip)")
    meta_path = store.folder(stream) / "meta.json"
    if meta_path.exists() and not str(store.meta(stream).get("spec", "")).startswith("npy:"):
        raise ValueError(f"stream {stream!r} in {store.root} holds extracted features "
                         f"({store.meta(stream)['spec']}); import under another stream name")
    dim = None
    batch_names, batch_rows = [], []
    for path in files:
        vector = np.load(path, allow_pickle=False)
        if vector.ndim == 2 and vector.shape[0] == 1:
            vector = vector[0]
        elif vector.ndim == 2 and frame_mean:
            vector = vector.mean(0)
        if vector.ndim != 1:
            raise ValueError(f"{path}: shape {vector.shape} is not one vector per clip; use the -UTT "
                             f"folder, or frame_mean=True (--frame-mean) to average frame features")
        if dim is None:
            dim = len(vector)
        elif len(vector) != dim:
            raise ValueError(f"{path}: {len(vector)} values, the other files have {dim}")
        if not np.isfinite(vector).all():
            raise ValueError(f"{path}: holds NaN or inf; fix or delete that file")
        batch_names.append(path.stem)
        batch_rows.append(vector.astype(np.float32))
        if len(batch_names) == PART_ROWS:
            store.write_part(stream, batch_names, np.stack(batch_rows))
            batch_names, batch_rows = [], []
    if batch_names:
        store.write_part(stream, batch_names, np.stack(batch_rows))
    # MERTools features are already what the authors fed their models: z-score them as usual
    store.write_meta(stream, {"spec": f"npy:{folder.resolve()}", "modality": _guess_modality(folder.name),
                              "dim": int(dim), "pooling": "utterance", "dtype": "float32",
                              "standardize": True})
    return len(files)


def export_npy(store: FeatureStore, stream: str, folder: str | Path) -> int:
    """Write every stored vector of `stream` as `<folder>/<name>.npy` (float32 `[dim]`)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    names, features = store.load(stream)
    for name, vector in zip(names, features):
        np.save(folder / f"{name}.npy", vector.astype(np.float32))
    return len(names)


def _guess_modality(folder_name: str) -> str:
    """MERTools folder names say the model; the common ones tell the modality."""
    name = folder_name.lower()
    if any(k in name for k in ("hubert", "wav2vec", "wavlm", "whisper", "vggish", "audio", "emonet")):
        return "audio"
    if any(k in name for k in ("bert", "roberta", "llama", "baichuan", "glm", "text", "sentence")):
        return "text"
    return "video"
