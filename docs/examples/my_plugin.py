"""An example plugin: `--plugin docs/examples/my_plugin.py` on any mer-ray job.

Registers an audio encoder (`rms-stats`) and a selection policy (`top-half`). Each is one
decorated definition; the registry holds what the pipeline needs to know about it (the encoder's
modality), so nothing else in mer-ray changes. The jobs import this file in the driver and in
every Ray Data actor and Ray Train worker.
"""
from dataclasses import replace

import numpy as np

from mer_ray.encoders import ENCODERS, Encoder
from mer_ray.mining.policies import POLICIES


class RmsStats(Encoder):
    """Loudness statistics of 0.1 s frames: mean, sd, max of the RMS, and the clip's length."""

    modality, dim = "audio", 4

    def __init__(self, spec: str = "rms-stats"):
        self.spec = spec

    def encode(self, inputs):
        rows = []
        for wave in inputs:
            frames = wave[: len(wave) // 1600 * 1600].reshape(-1, 1600) if len(wave) >= 1600 else wave[None]
            rms = np.sqrt((frames.astype(np.float64) ** 2).mean(1))
            rows.append([rms.mean(), rms.std(), rms.max(), len(wave) / 16000])
        return np.asarray(rows, np.float32)


@ENCODERS.register("rms-stats", modality="audio")
def rms_stats(**kwargs) -> Encoder:
    return RmsStats(**kwargs)


@POLICIES.register("top-half")
def top_half(cfg, params=None):
    """Keep the more confident half of the candidate clips (`mining: {policy: [top-half]}`)."""
    def select(probs, ctx, sel):
        return replace(sel, selected=sel.confidence >= np.median(sel.confidence))
    return select
