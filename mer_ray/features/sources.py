"""Where a run's feature streams come from: encoder specs, or features a team already has.

    --stream NAME=SPEC        an encoder spec (`hf-audio:/models/hubert`), or `npy:FOLDER` for a
                              MERTools `<model>-UTT` folder, imported into the store on first use
    --features DIR            a whole MERTools `features/` folder: each `<model>-UTT` subfolder
                              becomes stream `<model>` (its modality guessed from the name)
    --modality NAME=MODALITY  overrides that guess (audio | video | text)

`streams_from_args` turns these into the `extract.streams` mapping (npy folders made absolute,
so the saved config means the same thing from any directory); `import_npy_streams` does the
first-use import before extraction; `stream_modality` tells the default learners which
modality each stream carries.
"""
from __future__ import annotations

from pathlib import Path

from mer_ray.encoders import encoder_modality, parse_spec
from mer_ray.features.npy import guess_modality, import_missing
from mer_ray.features.store import FeatureStore

NPY = "npy"
UTT_SUFFIXES = ("-UTT", "_UTT")
MODALITIES = ("audio", "video", "text")


def _pairs(items: list[str] | None, flag: str) -> dict[str, str]:
    out = {}
    for item in items or ():
        name, eq, value = item.partition("=")
        if not eq or not name or not value:
            raise ValueError(f"{flag} takes NAME=VALUE, got {item!r}")
        out[name] = value
    return out


def npy_spec(folder: str | Path, *, modality: str | None = None, frame_mean: bool = False) -> str:
    """The canonical `npy:` spec of a folder: absolute path, options in a fixed order."""
    options = [f"modality={modality}"] * bool(modality) + ["frame_mean=true"] * frame_mean
    return f"{NPY}:{Path(folder).expanduser().resolve()}" + ("?" + "&".join(options) if options else "")


def canonical(spec: str) -> str:
    """An `npy:` spec with its folder made absolute; any other spec unchanged."""
    family, source, options = parse_spec(spec)
    if family != NPY:
        return spec
    unknown = set(options) - {"modality", "frame_mean"}
    if unknown or not source:
        raise ValueError(f"{spec!r}: an npy spec is npy:FOLDER[?modality=audio|video|text&frame_mean=true]")
    modality = options.get("modality")
    if modality is not None and modality not in MODALITIES:
        raise ValueError(f"{spec!r}: modality must be one of {', '.join(MODALITIES)}")
    return npy_spec(source, modality=modality, frame_mean=bool(options.get("frame_mean")))


def mertools_streams(features_dir: str | Path) -> dict[str, str]:
    """Every `<model>-UTT` folder of a MERTools `features/` folder → stream `<model>`."""
    root = Path(features_dir).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f"--features {root}: not a folder; expected MERTools' features/ folder "
                                f"holding <model>-UTT folders")
    streams = {}
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for suffix in UTT_SUFFIXES:
            if folder.name.endswith(suffix) and any(folder.glob("*.npy")):
                streams[folder.name[:-len(suffix)]] = npy_spec(folder)
    if not streams:
        hint = (f"; {root} itself holds .npy files: pass it as --stream NAME=npy:{root}"
                if any(root.glob("*.npy")) else "")
        raise FileNotFoundError(f"--features {root}: no <model>-UTT folder with .npy files in it{hint}")
    return streams


def streams_from_args(stream: list[str] | None = None, features: str | None = None,
                      modality: list[str] | None = None) -> dict[str, str] | None:
    """The streams the command line asks for (None: it asks for none, keep the config's)."""
    streams = mertools_streams(features) if features else {}
    streams.update({name: canonical(spec) for name, spec in _pairs(stream, "--stream").items()})
    for name, value in _pairs(modality, "--modality").items():
        if name not in streams:
            raise ValueError(f"--modality {name}={value}: no stream {name!r}; streams: {', '.join(sorted(streams))}")
        family, source, options = parse_spec(streams[name])
        if family != NPY:
            raise ValueError(f"--modality {name}: stream {name!r} is extracted by {streams[name]!r}, whose "
                             f"modality is fixed; --modality is for npy: streams")
        streams[name] = canonical(f"{NPY}:{source}?" + "&".join(
            f"{k}={v}" for k, v in {**options, "modality": value}.items()))
    return streams or None


def stream_modality(name: str, spec: str, store: FeatureStore | None = None) -> str:
    """The modality a stream carries ('audio', 'video', 'text', or a fused 'audio+video')."""
    family, source, options = parse_spec(spec)
    if family == NPY:
        return options.get("modality") or guess_modality(Path(source or "").name, name)
    try:
        return encoder_modality(spec)
    except KeyError:
        if store is not None and (store.folder(name) / "meta.json").exists():
            return store.meta(name).get("modality", "video")
        raise


def import_npy_streams(streams: dict[str, str], store: FeatureStore, names) -> dict[str, int]:
    """First use of every `npy:` stream (see `mer_ray.features.npy.import_missing`);
    returns {stream: clips imported now}."""
    npy = {s: spec for s, spec in streams.items() if parse_spec(spec)[0] == NPY}
    if not npy:
        return {}
    store.sync()
    return {s: import_missing(store, s, spec, names) for s, spec in npy.items()}
