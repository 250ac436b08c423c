"""The extraction stage as a job runs it: MERTools `npy:` streams imported first, then the
encoders for the rest (`extract_features`), with a progress line every 10 s; and seed 003's
MER-NOISE "noisy view" of the labeled clips."""
from __future__ import annotations

import dataclasses

import pandas as pd

from mer_ray import console
from mer_ray.config import ExtractConfig
from mer_ray.corpus.noise import Corruption, NoiseBank
from mer_ray.features.extract import ExtractSummary, extract_features, plan
from mer_ray.features.sources import import_npy_streams
from mer_ray.features.store import FeatureStore
from mer_ray.features.table import NOISY_VIEW


def extract_with_progress(manifest: pd.DataFrame, store: FeatureStore, extract_cfg: ExtractConfig, **kwargs):
    """`extract_features` with a progress line every 10 s (features written to the store so far),
    after the first use of any `npy:` (MERTools) stream."""
    imported = import_npy_streams(dict(extract_cfg.streams), store, manifest["name"])
    for stream, count in imported.items():
        if count:
            print(f"imported {count} clips of stream {stream} from {extract_cfg.streams[stream]}", flush=True)
    # the imported streams are complete now; the encoders run for the others only
    encoded = {s: spec for s, spec in extract_cfg.streams.items() if s not in imported}
    if not encoded:
        return ExtractSummary()
    extract_cfg = dataclasses.replace(extract_cfg, streams=encoded)
    todo = plan(manifest, store, encoded)
    total = sum(len(names) for names in todo.values())
    before = {s: set(store.part_files(s)) for s in todo}

    def written() -> int:
        import pyarrow.parquet as pq

        return sum(pq.read_metadata(p).num_rows for s in todo for p in store.part_files(s) if p not in before[s])

    with console.Ticker("extraction", total, written, unit="features"):
        return extract_features(manifest, store, extract_cfg, **kwargs)


def extract_noisy_view(labeled: pd.DataFrame, store: FeatureStore, extract_cfg: ExtractConfig,
                       seed: int) -> dict[str, str]:
    """Seed 003's MER-NOISE augmentation: extract the labeled clips once more, corrupted right
    after decoding, into sibling streams `<stream>@noisy-<recipe>` of every audio / video stream
    (transcripts are not corrupted). Returns {stream: its noisy stream}."""
    from mer_ray.encoders import encoder_modality

    videos = [v for v in labeled["video"] if isinstance(v, str)]
    noise = (NoiseBank.from_folder(extract_cfg.noise_dir) if extract_cfg.noise_dir
             else NoiseBank.babble_from_clips(videos, seed=seed))
    corruption = Corruption(noise, seed=seed)
    views = {}
    for stream, spec in extract_cfg.streams.items():
        try:
            modality = encoder_modality(spec)
        except KeyError as err:
            raise ValueError(f"extract.noisy_view re-extracts stream {stream!r} from corrupted clips, but "
                             f"{spec!r} is not an encoder mer-ray runs ({err}); turn noisy_view off") from None
        if modality != "text":
            views[stream] = f"{stream}{NOISY_VIEW}-{corruption.digest()}"
    view_cfg = dataclasses.replace(extract_cfg, streams={views[s]: extract_cfg.streams[s] for s in views})
    summary = extract_features(labeled, store, view_cfg, corruption=corruption)
    print(f"noisy view ({noise.source}, SNR {corruption.snr_range[0]:g}-{corruption.snr_range[1]:g} dB, "
          f"r in {list(corruption.factors)}): {summary.line()}", flush=True)
    return views
