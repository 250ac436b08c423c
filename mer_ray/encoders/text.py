"""Hugging Face text encoders: BERT family (BERT, RoBERTa, MacBERT ...) and decoder LMs (Llama,
Qwen, Baichuan ...), both as the mean of their token states over the real tokens (seed 003)."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from ._torch import TorchEncoder, local_path, masked_mean, pool_layers


class HFText(TorchEncoder):
    """`hf-text:/path/to/model` — options: pooling, batch_size, max_length, device, fp16.

    A missing or empty transcript encodes to zeros, as in the light text encoder.
    """

    modality = "text"

    def __init__(self, source: str | None = None, *, spec: str = "hf-text", max_length: int = 512,
                 **options: Any):
        super().__init__(source, spec=spec, **options)
        from transformers import AutoModel, AutoTokenizer

        path = local_path(source, spec)
        self.tokenizer = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
        # Decoder LMs ship without a pad token; any token works because padded positions are
        # masked out, and right padding keeps a causal model's real tokens unchanged.
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        self.tokenizer.padding_side = "right"
        model = AutoModel.from_pretrained(str(path), local_files_only=True)
        self.model = self._prepare(model)
        self.dim = model.config.hidden_size
        self.max_length = int(max_length)

    def encode(self, inputs: Sequence[str | None]) -> np.ndarray:
        torch = self._torch
        rows = np.zeros((len(inputs), self.dim), np.float32)
        texts = [(i, t.strip()) for i, t in enumerate(inputs) if isinstance(t, str) and t.strip()]
        texts.sort(key=lambda item: len(item[1]))   # similar lengths together: less padding
        for start in range(0, len(texts), self.batch_size):
            picked = texts[start : start + self.batch_size]
            batch = self.tokenizer([t for _, t in picked], padding=True, truncation=True,
                                   max_length=self.max_length, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items() if k in ("input_ids", "attention_mask")}
            with torch.inference_mode(), self._autocast():
                outputs = self.model(**batch, output_hidden_states=self.pooling != "last")
                pooled = masked_mean(pool_layers(outputs, self.pooling).float(), batch["attention_mask"])
            rows[[i for i, _ in picked]] = pooled.cpu().numpy()
        return self._stack(list(rows))

    def info(self) -> dict[str, Any]:
        return {**super().info(), "max_length": self.max_length}
