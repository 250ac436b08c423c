"""Encoder registry: a spec string → an `Encoder` (timm's `create_model` pattern).

Adding an encoder is one decorated factory function, `@ENCODERS.register(name, modality=...)`,
here, in a family module imported below, or in a plugin module (`--plugin`, mer_ray.plugins);
the feature pipeline only calls `create_encoder(spec)` and reads the registered metadata.

Spec strings:

    logmel-stats | frame-stats | text-bow | minilm         light encoders, no argument
    hf-audio:/models/hubert-large                          HuBERT / wav2vec 2.0 / WavLM / Whisper
    hf-text:/models/chinese-roberta                        BERT family or a decoder LM
    hf-image:/models/clip-vit-base                         HF ViT / CLIP vision / any AutoModel image tower
    timm:/models/vit-folder                                a timm folder (config.json + weights)
    timm:vit_base_patch16_224@/weights/emotion-vit.pth     a timm architecture + a weights file
    grid:timm:vit_base_patch16_224@/w.safetensors          frames stitched into 2x2 grids (seed 004)
    videomae:/models/videomae-base                         VideoMAE over 16 frames (seed 000)
    multimae-der:/models/mae-dfer?strategy=FSLF            one VideoMAE over frames + per-frame
                                                           spectrograms, CFAS|SFAS|FFLS|FSLF|OFOS|RFAS (seed 002)
    audio-text:/models/qwen2-audio                         Qwen2-Audio over audio + transcript + prompt (seed 004)

Options follow a `?`, as in a URL: `hf-audio:/m/hubert?pooling=last4-sum&chunk_seconds=10`.
Every model family takes `pooling` (`last`, `last4-mean`, `last4-sum`), `batch_size` and
`device`; the rest are listed on each encoder class.
"""
from __future__ import annotations

from typing import Any

from ..registry import Registry
from .base import INPUT_MODALITY, LAYER_POOLINGS, MODALITIES, MODALITY_INPUTS, Encoder

__all__ = ["ENCODERS", "Encoder", "INPUT_MODALITY", "LAYER_POOLINGS", "MODALITIES", "MODALITY_INPUTS",
           "create_encoder", "encoder_inputs", "encoder_modality", "list_encoders", "parse_spec"]

# Every family registers with the modality its encoders take, so the pipeline can plan (which
# inputs to decode) without loading a model; a family whose encoders take inputs in another
# order or of another kind than its modality's default (MODALITY_INPUTS) says so with `inputs`:
#
#     @ENCODERS.register("my-audio-visual", modality="audio+video", inputs=("frames", "audio"))
#     def my_audio_visual(source=None, **kwargs) -> Encoder: ...
ENCODERS: Registry[Encoder] = Registry("encoder")


def encoder_modality(spec: str) -> str:
    """The modality a spec's encoder takes ('audio', 'video', 'text' or a fused 'audio+video' /
    'audio+text'), without building it."""
    family = parse_spec(spec)[0]
    modality = ENCODERS.meta(family).get("modality")   # unknown family → the KeyError naming the registered ones
    if modality not in MODALITIES:
        raise ValueError(f"encoder {family!r} is registered without a modality (or with {modality!r}); register "
                         f"it as @ENCODERS.register({family!r}, modality=...) with one of {', '.join(MODALITIES)}")
    return modality


def encoder_inputs(spec: str) -> tuple[str, ...]:
    """The decoded inputs a spec's encoder takes per clip, in order ('frames', 'audio', 'transcript');
    a fused encoder gets one tuple of them per clip."""
    family = parse_spec(spec)[0]
    return tuple(ENCODERS.meta(family).get("inputs") or MODALITY_INPUTS[encoder_modality(spec)])


def _coerce(value: str) -> Any:
    """Option values arrive as text: numbers and booleans become Python values."""
    low = value.lower()
    if low in ("true", "false"):
        return low == "true"
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def parse_spec(spec: str) -> tuple[str, str | None, dict[str, Any]]:
    """`family[:source][?key=value&...]` → (family, source, options).

    The family is the registry key; the source (a model path, or `arch@weights` for timm) is
    everything after the first ':' up to the last '?', so Windows drives and nested specs
    (`grid:timm:...`) pass through.
    """
    body, _, query = spec.rpartition("?") if "?" in spec else (spec, "", "")
    options: dict[str, Any] = {}
    for item in filter(None, query.split("&")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"encoder spec {spec!r}: option {item!r} is not key=value")
        options[key] = _coerce(value)
    family, sep, source = body.partition(":")
    return family, (source if sep else None), options


def create_encoder(spec: str, **kwargs: Any) -> Encoder:
    """Build the encoder a spec string names; unknown families raise KeyError naming the known ones.

    Keyword arguments override options given in the spec (e.g. `device="cuda"`).
    """
    family, source, options = parse_spec(spec)
    factory = ENCODERS.get(family)
    options.update(kwargs)
    options.setdefault("spec", spec)   # meta.json records the exact spec, options included
    if source is None:
        return factory(**options)
    return factory(source, **options)


def list_encoders() -> list[str]:
    return ENCODERS.names()


# Light CPU encoders (numpy; MiniLM imports torch only when built).
from . import light as _light  # noqa: E402


@ENCODERS.register("logmel-stats", modality="audio")
def logmel_stats(**kwargs: Any) -> Encoder:
    return _light.LogMelStats(**kwargs)


@ENCODERS.register("frame-stats", modality="video")
def frame_stats(**kwargs: Any) -> Encoder:
    return _light.FrameStats(**kwargs)


@ENCODERS.register("text-bow", modality="text")
def text_bow(**kwargs: Any) -> Encoder:
    return _light.TextBow(**kwargs)


@ENCODERS.register("minilm", modality="text")
def minilm(**kwargs: Any) -> Encoder:
    return _light.MiniLM(**kwargs)


# Model families: each module imports torch / transformers / timm only when an encoder is built,
# so listing the registry (or a decode task) stays cheap.
from . import audio as _audio, text as _text, visual as _visual  # noqa: E402


@ENCODERS.register("hf-audio", modality="audio")
def hf_audio(source: str | None = None, **kwargs: Any) -> Encoder:
    return _audio.HFAudio(source, **kwargs)


@ENCODERS.register("hf-text", modality="text")
def hf_text(source: str | None = None, **kwargs: Any) -> Encoder:
    return _text.HFText(source, **kwargs)


@ENCODERS.register("hf-image", modality="video")
def hf_image(source: str | None = None, **kwargs: Any) -> Encoder:
    return _visual.HFImage(source, **kwargs)


@ENCODERS.register("timm", modality="video")
def timm_image(source: str | None = None, **kwargs: Any) -> Encoder:
    return _visual.TimmImage(source, **kwargs)


@ENCODERS.register("grid", modality="video")
def grid(source: str | None = None, *, spec: str = "grid", grid: int = 2, **kwargs: Any) -> Encoder:
    """`grid:<image spec>`: the inner timm / hf-image encoder on stitched frame grids (seed 004)."""
    family, inner, _ = parse_spec(source or "")
    if family not in ("timm", "hf-image") or inner is None:
        raise ValueError(f"encoder spec {spec!r}: grid wraps an image encoder, e.g. "
                         f"grid:timm:vit_base_patch16_224@/path/weights.pth or grid:hf-image:/path")
    return ENCODERS.get(family)(inner, spec=spec, grid=grid, **kwargs)


@ENCODERS.register("videomae", modality="video")
def videomae(source: str | None = None, **kwargs: Any) -> Encoder:
    return _visual.VideoMAE(source, **kwargs)


# Fused families take two inputs per clip (see MODALITIES in base.py).
from . import audio_text as _audio_text, fused as _fused  # noqa: E402


@ENCODERS.register("multimae-der", modality="audio+video")
def multimae_der(source: str | None = None, **kwargs: Any) -> Encoder:
    return _fused.MultiMAEDER(source, **kwargs)


@ENCODERS.register("audio-text", modality="audio+text")
def audio_text(source: str | None = None, **kwargs: Any) -> Encoder:
    return _audio_text.QwenAudioText(source, **kwargs)
