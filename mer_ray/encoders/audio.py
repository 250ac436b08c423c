"""Hugging Face speech encoders: HuBERT, wav2vec 2.0, WavLM (raw waveform) and Whisper's encoder.

A clip is cut into chunks of at most `chunk_seconds` (10 s, as MERTools does for long utterances),
each chunk is encoded, its frames are averaged, and the clip's vector is the frame-weighted mean
of its chunks. Chunks of a batch run together, padded: the models that were trained with an
attention mask (`feat_extract_norm == "layer"`: the large HuBERT / wav2vec 2.0 / WavLM) get one,
and padded frames never enter the mean. The others (`"group"` norm: HuBERT-base, wav2vec 2.0-base)
normalise over time, so zero padding would change a clip's features with the batch it lands in;
their chunks are only batched with chunks of the same length (every full 10 s chunk), which keeps
a clip's vector independent of its batch: a resumed extraction equals an uninterrupted one.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._torch import TorchEncoder, local_path, masked_mean, pool_layers, read_json

SAMPLE_RATE = 16000
MIN_SAMPLES = 1600   # 0.1 s: shorter chunks give no frame after the conv stack; padded up to this


class HFAudio(TorchEncoder):
    """`hf-audio:/path/to/model` — options: pooling, batch_size (chunks per forward), chunk_seconds,
    device, fp16."""

    modality = "audio"

    def __init__(self, source: str | None = None, *, spec: str = "hf-audio",
                 chunk_seconds: float = 10.0, **options: Any):
        super().__init__(source, spec=spec, **options)
        from transformers import AutoConfig, AutoModel

        path = local_path(source, spec)
        config = AutoConfig.from_pretrained(str(path), local_files_only=True)
        self.is_whisper = config.model_type == "whisper"
        self.use_mask = False
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        if self.is_whisper:
            from transformers import WhisperFeatureExtractor

            model = model.get_encoder()
            has_extractor = (path / "preprocessor_config.json").is_file()
            self.extractor = (WhisperFeatureExtractor.from_pretrained(str(path), local_files_only=True)
                              if has_extractor else WhisperFeatureExtractor(feature_size=config.num_mel_bins))
            # Whisper's encoder only takes a fixed-length log-mel window (30 s for real models).
            self.mel_frames = config.max_source_positions * 2
            window_seconds = self.mel_frames * self.extractor.hop_length / SAMPLE_RATE
            chunk_seconds = min(chunk_seconds, window_seconds)
            self.dim = config.d_model
        else:
            extractor = read_json(path / "preprocessor_config.json")
            self.normalize = bool(extractor.get("do_normalize", True))
            self.use_mask = getattr(config, "feat_extract_norm", "group") == "layer"
            self.dim = config.hidden_size
        self.model = self._prepare(model)
        self.chunk = int(chunk_seconds * SAMPLE_RATE)

    def encode(self, inputs: Sequence[np.ndarray | None]) -> np.ndarray:
        chunks: list[np.ndarray] = []
        owner: list[int] = []
        for index, waveform in enumerate(inputs):
            if waveform is None or len(waveform) == 0:
                continue
            signal = np.asarray(waveform, dtype=np.float32).reshape(-1)
            for start in range(0, len(signal), self.chunk):
                piece = signal[start : start + self.chunk]
                if start and len(piece) < MIN_SAMPLES:
                    break  # a sliver at the end adds nothing
                chunks.append(piece)
                owner.append(index)
        sums = np.zeros((len(inputs), self.dim), np.float64)
        weights = np.zeros(len(inputs), np.float64)
        # Similar lengths together: less padding per forward pass.
        order = sorted(range(len(chunks)), key=lambda i: len(chunks[i]))
        for picked in self._batches(order, [len(c) for c in chunks]):
            vectors, frames = self._forward([chunks[i] for i in picked])
            for i, vector, count in zip(picked, vectors, frames):
                sums[owner[i]] += vector * count
                weights[owner[i]] += count
        rows = sums / np.maximum(weights, 1.0)[:, None]
        return self._stack(list(rows.astype(np.float32)))

    def _batches(self, order: list[int], lengths: list[int]):
        """Runs of `order` (sorted by length) of at most `batch_size`; equal lengths only when
        padding would change the result."""
        batch: list[int] = []
        for i in order:
            padding_matters = not (self.is_whisper or self.use_mask)
            if batch and (len(batch) == self.batch_size
                          or (padding_matters and lengths[i] != lengths[batch[0]])):
                yield batch
                batch = []
            batch.append(i)
        if batch:
            yield batch

    def _forward(self, chunks: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Mean state per chunk `[N, dim]` and its number of frames `[N]`."""
        torch = self._torch
        with torch.inference_mode(), self._autocast():
            if self.is_whisper:
                features = self.extractor(chunks, sampling_rate=SAMPLE_RATE, return_tensors="pt",
                                          padding="max_length", truncation=True,
                                          max_length=self.mel_frames * self.extractor.hop_length)
                mels = features["input_features"][..., : self.mel_frames].to(self.device)
                outputs = self.model(mels, output_hidden_states=self.pooling != "last")
                # two mel frames per encoder position; positions past the audio are padding
                valid = [max(1, -(-len(c) // (2 * self.extractor.hop_length))) for c in chunks]
            else:
                lengths = [max(len(c), MIN_SAMPLES) for c in chunks]
                batch = np.zeros((len(chunks), max(lengths)), np.float32)
                mask = np.zeros_like(batch, dtype=np.int64)
                for row, chunk in enumerate(chunks):
                    if self.normalize:  # zero mean, unit variance per utterance, as the extractors do
                        chunk = (chunk - chunk.mean()) / np.sqrt(chunk.var() + 1e-7)
                    batch[row, : len(chunk)] = chunk
                    mask[row, : lengths[row]] = 1
                values = torch.from_numpy(batch).to(self.device)
                attention = torch.from_numpy(mask).to(self.device) if self.use_mask else None
                outputs = self.model(values, attention_mask=attention,
                                     output_hidden_states=self.pooling != "last")
                valid = self.model._get_feat_extract_output_lengths(torch.tensor(lengths)).tolist()
            states = pool_layers(outputs, self.pooling).float()
            steps = torch.arange(states.shape[1], device=states.device)[None, :]
            frame_mask = steps < torch.tensor(valid, device=states.device)[:, None]
            pooled = masked_mean(states, frame_mask)
        return pooled.cpu().numpy(), np.minimum(np.asarray(valid), states.shape[1])

    def info(self) -> dict[str, Any]:
        return {**super().info(), "chunk_seconds": self.chunk / SAMPLE_RATE}
