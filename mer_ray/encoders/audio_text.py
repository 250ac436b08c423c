"""Joint audio-text features from an audio-language model (seed 004, section 2.3: Qwen_JAT).

Seed 004 feeds the audio (Whisper encoder → audio embeddings), the clip's punctuated transcript
and a prompt into one LLM together (early fusion), and takes the mean of the decoder's last four
layers as the joint audio-text feature. Here the model is any Qwen2-Audio checkpoint
(`Qwen2AudioForConditionalGeneration` in transformers), e.g. Qwen/Qwen2-Audio-7B-Instruct or a
model fine-tuned on emotion data as the paper's; the clip vector is the mean over the real tokens
(prompt, audio and transcript) of the pooled layers.

Point it at real weights once, on a machine with internet:

    huggingface-cli download Qwen/Qwen2-Audio-7B-Instruct --local-dir /models/qwen2-audio
    --stream joint=audio-text:/models/qwen2-audio

The folder needs config.json, the weights and the processor files (processor_config.json or
preprocessor_config.json, tokenizer files); nothing is downloaded at run time.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._torch import HOW_TO_GET_WEIGHTS, TorchEncoder, local_path, masked_mean, pool_layers

SAMPLE_RATE = 16000
DEFAULT_PROMPT = ("Listen to the speaker and read the transcript of what they say. "
                  "Which emotion do they express: neutral, angry, happy, sad, worried or surprise.")
# Qwen2-Audio's chat layout (its processor's default template): the <|AUDIO|> token is expanded
# by the processor to one token per audio frame of the encoder.
TEMPLATE = ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nAudio 1: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
            "Transcript: {transcript}\n{prompt}<|im_end|>\n<|im_start|>assistant\n")


class QwenAudioText(TorchEncoder):
    """`audio-text:/folder` — a Qwen2-Audio model over (audio, transcript) pairs.

    options: prompt (the instruction after the transcript; in a spec string it cannot hold
    '?', '&' or '=', pass `prompt=` to `create_encoder` for any text), pooling (default
    last4-mean, seed 004), batch_size, device, fp16. Audio past 30 s is cut (Whisper's window).
    """

    modality = "audio+text"

    def __init__(self, source: str | None = None, *, spec: str = "audio-text", prompt: str = DEFAULT_PROMPT,
                 batch_size: int = 4, **options: Any):
        super().__init__(source, spec=spec, batch_size=batch_size, **options)
        from transformers import AutoConfig, AutoProcessor, Qwen2AudioForConditionalGeneration

        path = local_path(source, spec)
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        if config.model_type != "qwen2_audio":
            raise ValueError(f"encoder {spec!r}: {path} holds a {config.model_type!r} model; audio-text "
                             f"takes a Qwen2-Audio checkpoint (model_type qwen2_audio)")
        try:
            self.processor = AutoProcessor.from_pretrained(str(path), local_files_only=True)
        except (OSError, ValueError, TypeError) as exc:
            raise FileNotFoundError(f"encoder {spec!r}: no Qwen2-Audio processor (feature extractor + "
                                    f"tokenizer files) in {path}: {exc}; "
                                    + HOW_TO_GET_WEIGHTS.format(path=str(path))) from None
        # right padding: a causal LM's real tokens never see the pads, so a clip's vector does
        # not depend on the batch it lands in
        self.processor.tokenizer.padding_side = "right"
        dtype = self._torch.float16 if self.fp16 else self._torch.float32
        model = Qwen2AudioForConditionalGeneration.from_pretrained(str(path), local_files_only=True,
                                                                   dtype=dtype)
        self.model = self._prepare(model.model)   # no LM head: features, not generation
        self.dim = config.text_config.hidden_size
        self.prompt = str(prompt)

    def text(self, transcript: str | None) -> str:
        """The model's text input for one clip: the chat layout with the transcript and prompt."""
        return TEMPLATE.format(transcript=(transcript or "").strip(), prompt=self.prompt)

    def encode(self, inputs: Sequence[tuple[np.ndarray | None, str | None] | None]) -> np.ndarray:
        torch = self._torch
        rows = np.zeros((len(inputs), self.dim), np.float32)
        present = [i for i, pair in enumerate(inputs)
                   if pair is not None and pair[0] is not None and len(pair[0])]
        for start in range(0, len(present), self.batch_size):
            picked = present[start : start + self.batch_size]
            batch = self.processor(text=[self.text(inputs[i][1]) for i in picked],
                                   audio=[np.asarray(inputs[i][0], np.float32).reshape(-1) for i in picked],
                                   sampling_rate=SAMPLE_RATE, padding=True, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()
                     if k in ("input_ids", "attention_mask", "input_features", "feature_attention_mask")}
            with torch.inference_mode(), self._autocast():
                outputs = self.model(**batch, output_hidden_states=True, use_cache=False)
                states = pool_layers(outputs, self.pooling).float()
                rows[picked] = masked_mean(states, batch["attention_mask"]).cpu().numpy()
        return self._stack(list(rows))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "prompt": self.prompt}
