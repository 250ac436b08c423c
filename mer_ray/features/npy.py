"""MERTools feature folders ↔ the feature store, so teams can bring features they already have.

MERTools writes one utterance-level vector per clip: `features/<model>-UTT/<name>.npy`, shape
`[dim]` (some scripts save `[1, dim]`). Frame-level folders (`-FRM`, `[T, dim]`) are averaged
over time only when asked (`frame_mean=True`): the learners take one vector per clip.

A stream spec `npy:FOLDER[?modality=audio&frame_mean=true]` (in `--stream`, `--features` or a
config's `extract.streams`) imports FOLDER on first use (`import_missing`): the clips the store
lacks are read from it, the ones it has no file for are recorded as missing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from mer_ray.features.store import FeatureStore

PART_ROWS = 1024   # clips per part file on import


def import_npy(folder: str | Path, store: FeatureStore, stream: str, *, frame_mean: bool = False,
               names: set[str] | None = None, spec: str | None = None, modality: str | None = None) -> int:
    """Read every `<name>.npy` of a MERTools folder into `stream`; returns the number imported.

    Every vector must have the same size; a bad file raises naming it. Names already stored in
    the stream are replaced by a rerun's parts (the store keeps the last copy of a name).
    `names` limits the import to those clips; `spec` is what meta.json records (default
    `npy:<folder>`); `modality` overrides the guess from the folder's name.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: not a folder; expected MERTools features/<model>-UTT/")
    files = sorted(p for p in folder.glob("*.npy") if names is None or p.stem in names)
    if not files:
        raise FileNotFoundError(f"{folder}: no .npy files (expected <clip name>.npy per clip)")
    meta_path = store.folder(stream) / "meta.json"
    dim = None
    if meta_path.exists():
        meta = store.meta(stream)
        if not str(meta.get("spec", "")).startswith("npy:"):
            raise ValueError(f"stream {stream!r} in {store.root} holds extracted features "
                             f"({meta['spec']}); import under another stream name")
        dim = int(meta["dim"]) if names is not None else None   # adding clips: the same size as before
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
    store.write_meta(stream, {"spec": spec or f"npy:{folder.resolve()}",
                              "modality": modality or guess_modality(folder.name, stream),
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


MODALITY_WORDS = {   # checked in this order: "qwen2-audio" is audio, "clip-vit" video
    "audio": ("hubert", "wav2vec", "wavlm", "whisper", "vggish", "audio", "emotion2vec", "data2vec",
              "opensmile", "egemaps", "mfcc", "logmel"),
    "text": ("bert", "roberta", "llama", "baichuan", "glm", "text", "sentence", "xlnet", "mistral", "qwen",
             "bloom", "moss", "minilm"),
    "video": ("vit", "clip", "manet", "emonet", "face", "resnet", "senet", "msceleb", "imagenet", "videomae",
              "dinov2", "frame", "visual", "video"),
}


def guess_modality(folder_name: str, stream: str | None = None) -> str:
    """MERTools folder names say the model; the common ones tell the modality. A stream named
    after a modality (`--stream audio=npy:.../A-UTT`) says it outright. Default: video."""
    if stream in MODALITY_WORDS:
        return stream
    name = folder_name.lower()
    for modality, words in MODALITY_WORDS.items():
        if any(w in name for w in words):
            return modality
    return "video"


def import_missing(store: FeatureStore, stream: str, spec: str, manifest_names) -> int:
    """First use of an `npy:FOLDER` stream: import the corpus's clips that the store lacks from
    FOLDER, and record the ones FOLDER has no file for as missing (zeros at training time,
    like a clip without that modality). Returns the number imported; cheap when all is there.

    A stream that holds extracted features, or features of another folder, is refused with
    what to do: the store keeps one source per stream name.
    """
    from mer_ray.encoders import parse_spec
    from mer_ray.features.extract import MISSING

    _, source, options = parse_spec(spec)
    folder = Path(source or "")
    meta_path = store.folder(stream) / "meta.json"
    if meta_path.exists():
        held = str(store.meta(stream).get("spec", ""))
        if not held.startswith("npy:"):
            raise ValueError(f"stream {stream!r} in {store.root} holds features extracted by {held!r}, not the "
                             f"MERTools folder {folder}; give the folder another stream name (--stream "
                             f"{stream}-utt={spec}) or use a new store")
        held_source = parse_spec(held)[1]
        if Path(held_source or "") != folder:
            raise ValueError(f"stream {stream!r} in {store.root} holds features imported from {held_source}, "
                             f"not {folder}; give this folder another stream name or use a new store")
    if not folder.is_dir():
        raise FileNotFoundError(f"stream {stream!r}: {folder} is not a folder; expected a MERTools "
                                f"features/<model>-UTT folder of <clip name>.npy files")
    stored = store.stored_names(stream)
    known_missing = {e["name"] for e in store.errors(stream) if e["stage"] == MISSING}
    todo = set(manifest_names) - stored - known_missing
    files = {p.stem for p in folder.glob("*.npy")}
    modality = options.get("modality")
    imported = 0
    if todo & files:
        imported = import_npy(folder, store, stream, frame_mean=bool(options.get("frame_mean")),
                              names=todo & files, spec=spec, modality=modality)
    elif meta_path.exists() and store.meta(stream).get("spec") != spec:   # e.g. a new ?modality=
        info = {k: v for k, v in store.meta(stream).items() if k not in ("stream", "count", "code_version")}
        store.write_meta(stream, {**info, "spec": spec, "modality": modality or info.get("modality")})
    if not meta_path.exists():
        raise FileNotFoundError(f"stream {stream!r}: {folder} has no <name>.npy for any clip of the corpus "
                                f"(e.g. {sorted(todo)[:3]}); is it this corpus's features folder?")
    absent = sorted(todo - files)
    if absent:
        store.write_errors(stream, [dict(name=n, stage=MISSING, message=f"{n}: no {n}.npy in {folder}; "
                                         f"this stream is zeros at training time") for n in absent])
    return imported
