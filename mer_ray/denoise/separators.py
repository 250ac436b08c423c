"""Speech-separation models by spec string: a noisy 16 kHz waveform → two (or more) 16 kHz tracks.

    convtasnet:/models/convtasnet-libri2mix.pt                   torchaudio's ConvTasNet, 8 kHz
    convtasnet:/w.pt?sample_rate=16000&enc_num_feats=256&...     other sizes: the constructor's
                                                                 arguments as options

The ConvTasNet defaults are torchaudio's `conv_tasnet_base` at 8 kHz, the architecture of
`torchaudio.pipelines.CONVTASNET_BASE_LIBRI2MIX`. Its weights, once, on a machine with internet:

    python -c "import torch, torchaudio; torch.save(torchaudio.pipelines.CONVTASNET_BASE_LIBRI2MIX
               .get_model().state_dict(), 'convtasnet-libri2mix.pt')"

Seed 004 used MossFormer2 (ClearerVoice-Studio), which is neither in torchaudio nor in
transformers. Plugging it (or any separator) in is one decorated factory in a module of yours,
imported with `--plugin your_module` (jobs/denoise_audio.py):

    from mer_ray.denoise.separators import SEPARATORS, Separator

    class MossFormer2(Separator):
        def __init__(self, source, *, spec, device=None):
            self.sample_rate = 8000          # MossFormer2_SS_8K; 16000 for the 16 kHz model
            self.model = ...                 # load your checkpoint from `source`
        def separate_native(self, waveform):   # float32 [T] at self.sample_rate
            return [track0, track1]          # float32 arrays at self.sample_rate

    @SEPARATORS.register("mossformer2")
    def mossformer2(source=None, **options):
        return MossFormer2(source, **options)

and the spec `mossformer2:/models/MossFormer2_SS_8K`. `Separator.separate` resamples 16 kHz in and
out around `separate_native`, so an 8 kHz model gives 16 kHz tracks (seed 004 notes that the
8 kHz round trip loses quality for 16 kHz encoders; the rule still decides whether that trade is
worth it per clip).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np

from mer_ray.registry import Registry

from .spec import check_spec, create_from_spec, default_device, missing_weights_error

__all__ = ["SAMPLE_RATE", "SEPARATORS", "SOURCE_CHECKS", "ConvTasNetSeparator", "Separator", "check_separator",
           "create_separator"]

SAMPLE_RATE = 16000   # what decode_clip gives and what the chosen track is written at

SEPARATORS: Registry["Separator"] = Registry("separator")
# family → a cheap check of the spec's source (raises the missing-weights error), run by the
# driver before any actor starts, so a wrong path fails at once with its message rather than
# inside every actor's start. A plugin may add its own.
SOURCE_CHECKS: dict[str, Callable[[str | None, str], Any]] = {}


class Separator:
    """A separation model: `separate(waveform at 16 kHz) → tracks at 16 kHz`, same length."""

    sample_rate: int = SAMPLE_RATE   # the rate the model itself runs at
    spec: str = ""

    def separate_native(self, waveform: np.ndarray) -> list[np.ndarray]:
        raise NotImplementedError

    def separate(self, waveform: np.ndarray) -> list[np.ndarray]:
        signal = np.array(waveform, dtype=np.float32).reshape(-1)   # a writable copy for torch
        native = _resample(signal, SAMPLE_RATE, self.sample_rate)
        tracks = []
        for track in self.separate_native(native):
            track = _resample(np.asarray(track, dtype=np.float32).reshape(-1), self.sample_rate, SAMPLE_RATE)
            # resampling rounds the length: trim or pad to the input's so tracks align with the video
            track = track[: len(signal)] if len(track) >= len(signal) else np.pad(track, (0, len(signal) - len(track)))
            tracks.append(np.ascontiguousarray(track, dtype=np.float32))
        return tracks

    def info(self) -> dict[str, Any]:
        return {"spec": self.spec, "sample_rate": self.sample_rate}


def _resample(signal: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out or signal.size == 0:
        return signal
    import torch
    import torchaudio.functional as F

    return F.resample(torch.from_numpy(signal), rate_in, rate_out).numpy()


def check_separator(spec: str) -> None:
    """Fail now, in the driver, on an unknown family or a missing model (nothing is loaded)."""
    check_spec(SEPARATORS, SOURCE_CHECKS, spec, what="separator")


def create_separator(spec: str, **overrides: Any) -> Separator:
    """The separator a spec names; unknown names raise KeyError listing the registered ones."""
    return create_from_spec(SEPARATORS, spec, overrides, what="separator")


# torchaudio's conv_tasnet_base, the CONVTASNET_BASE_LIBRI2MIX architecture
CONVTASNET_BASE = dict(num_sources=2, enc_kernel_size=16, enc_num_feats=512, msk_kernel_size=3,
                       msk_num_feats=128, msk_num_hidden_feats=512, msk_num_layers=8, msk_num_stacks=3,
                       msk_activate="relu")


class ConvTasNetSeparator(Separator):
    """`convtasnet:/path/weights.pt` — a state dict for torchaudio.models.ConvTasNet; options:
    sample_rate (8000), device, and the constructor's arguments (see CONVTASNET_BASE)."""

    def __init__(self, source: str | None = None, *, spec: str = "convtasnet", sample_rate: int = 8000,
                 device: str | None = None, **architecture: Any):
        import torch
        from torchaudio.models import ConvTasNet

        unknown = set(architecture) - set(CONVTASNET_BASE)
        if unknown:
            raise ValueError(f"separator {spec!r}: unknown option(s) {sorted(unknown)}; ConvTasNet takes "
                             f"sample_rate, device and {', '.join(CONVTASNET_BASE)}")
        path = _weights_file(source, spec)
        self.spec, self.sample_rate = spec, int(sample_rate)
        self.device = device or default_device()
        self.architecture = {**CONVTASNET_BASE, **architecture}
        state = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
            state = state["state_dict"]   # a training checkpoint rather than a bare state dict
        model = ConvTasNet(**self.architecture)
        try:
            model.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            detail = " ".join(str(err).split())[:300]
            raise ValueError(
                f"separator {spec!r}: {path} does not fit ConvTasNet({self.architecture}) ({detail}...); "
                f"give the architecture it was trained with as options, e.g. "
                f"convtasnet:{path}?enc_num_feats=256&msk_num_stacks=2") from None
        self.model = model.to(self.device).eval()
        self._torch = torch

    def separate_native(self, waveform: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            mixture = torch.from_numpy(np.ascontiguousarray(waveform))[None, None].to(self.device)
            tracks = self.model(mixture)[0].float().cpu().numpy()   # [num_sources, T]
        return list(tracks)

    def info(self) -> dict[str, Any]:
        return {**super().info(), **self.architecture}


def _weights_file(source: str | None, spec: str) -> Path:
    if not source:
        raise missing_weights_error(f"separator spec {spec!r} names no weights file",
                                    "convtasnet:/models/convtasnet.pt", ValueError)
    path = Path(source).expanduser()
    if not path.is_file():
        raise missing_weights_error(f"separator {spec!r}: {path} is not a file", f"convtasnet:{path}")
    return path


SOURCE_CHECKS["convtasnet"] = _weights_file


@SEPARATORS.register("convtasnet")
def convtasnet(source: str | None = None, **options: Any) -> Separator:
    return ConvTasNetSeparator(source, **options)
