"""MiniLM's forward for small batches on a GPU, replayed from captured CUDA graphs.

One text through MiniLM on an H200 takes 4.7 ms, of which the GPU works 0.24 ms: the rest is
Python launching some fifty kernels one by one (benchmarks/results/cache_lookup_gpu.json and
docs/gpu.md). A CUDA graph launches them at once. Graphs need fixed shapes, so a batch is
padded to a bucket: its size up to the next of `BATCH_BUCKETS` (with copies of its first row)
and its length up to the next of `LENGTH_BUCKETS` (padding tokens, masked out of attention
and of the mean). Each bucket is compiled on its first use (TorchDynamo's `cudagraphs`
backend: the model traced once, then its kernels captured and replayed). Bigger batches and
longer texts take the eager model, as does every model whose pooling is not a plain mean.
"""

from __future__ import annotations

import bisect
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

BATCH_BUCKETS = (1, 8)  # with LENGTH_BUCKETS, six graphs: under TorchDynamo's recompile limit
LENGTH_BUCKETS = (32, 64, 128)


def mean_pooled(model: Any) -> bool:
    """Whether a SentenceTransformer is a transformer, a plain mean pooling and nothing else
    but a normalisation: the shape `GraphedEncoder` reproduces."""
    names = [type(module).__name__ for module in model]
    if names[:2] != ["Transformer", "Pooling"] or set(names[2:]) - {"Normalize"}:
        return False
    pooling = model[1].get_config_dict()
    if "pooling_mode" in pooling:
        return bool(pooling["pooling_mode"] == "mean")
    modes = [key for key, on in pooling.items() if key.startswith("pooling_mode_") and on]
    return modes == ["pooling_mode_mean_tokens"]


class GraphedEncoder:
    """Normalised mean-pooled embeddings of up to `batch_buckets[-1]` texts of up to
    `length_buckets[-1]` tokens per call, through CUDA graphs (on a CPU model, the same traced
    code without them); `encode` returns None for what it does not take (run eager)."""

    def __init__(
        self,
        model: Any,
        *,
        batch_buckets: tuple[int, ...] = BATCH_BUCKETS,
        length_buckets: tuple[int, ...] = LENGTH_BUCKETS,
    ) -> None:
        import torch

        self._torch = torch
        self._batch_buckets = batch_buckets
        self._length_buckets = length_buckets
        self._tokenizer = model.tokenizer
        self._max_length = min(int(model.max_seq_length), length_buckets[-1])
        self._device = model.device
        transformer = model[0].auto_model
        accepts_token_types = "token_type_ids" in transformer.forward.__code__.co_varnames

        def pooled(input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            extra = {"token_type_ids": token_type_ids} if accepts_token_types else {}
            hidden = transformer(
                input_ids=input_ids, attention_mask=attention_mask, **extra
            ).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean.float(), dim=-1)

        self.enabled = True
        try:
            self._forward = torch.compile(pooled, backend="cudagraphs", dynamic=False)
        except Exception:  # e.g. a Python that this torch's TorchDynamo does not support
            log.warning("CUDA graphs off for the embedder; it runs eager", exc_info=True)
            self.enabled = False
            return
        # Captured graphs belong to the thread that captured them (torch keeps them per
        # thread), and callers come from a pool: one thread captures and replays them all.
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="embedder-graphs")
        # Capture every bucket now, not on a request's time: torch runs a new graph's first
        # call eagerly, records it on the second and replays it from the third.
        for rows in batch_buckets:
            for width in length_buckets:
                # Three distinct tensors, as a request brings (TorchDynamo guards on aliasing).
                inputs = [
                    torch.full((rows, width), fill, dtype=torch.long, device=self._device)
                    for fill in (1, 1, 0)
                ]
                for _ in range(3):
                    if self.enabled:
                        self._replay(inputs, rows)

    def encode(self, texts: list[str]) -> np.ndarray | None:
        if not self.enabled or not texts or len(texts) > self._batch_buckets[-1]:
            return None
        encoded = self._tokenizer(
            texts, padding=True, truncation=True, max_length=self._max_length + 1,
            return_tensors="pt",
        )  # fmt: skip
        length = encoded["input_ids"].shape[1]
        if length > self._max_length:
            return None
        rows = self._batch_buckets[bisect.bisect_left(self._batch_buckets, len(texts))]
        width = self._length_buckets[bisect.bisect_left(self._length_buckets, length)]
        pad = self._tokenizer.pad_token_id or 0
        inputs = [
            self._bucketed(encoded["input_ids"], rows, width, pad),
            self._bucketed(encoded["attention_mask"], rows, width, 0),
            self._bucketed(encoded.get("token_type_ids"), rows, width, 0),
        ]
        return self._replay(inputs, len(texts))

    def _replay(self, inputs: list[Any], count: int) -> np.ndarray | None:
        return self._thread.submit(self._run, inputs, count).result()

    def _run(self, inputs: list[Any], count: int) -> np.ndarray | None:
        torch = self._torch
        try:
            with torch.inference_mode():
                # The last replay's output is overwritten by this one; it was copied out.
                torch.compiler.cudagraph_mark_step_begin()
                vectors = self._forward(*inputs)[:count].cpu().numpy()
        except Exception:
            # A model or a torch build that cannot be traced or captured: eager from now on.
            log.warning("CUDA graphs off for the embedder; it runs eager", exc_info=True)
            self.enabled = False
            return None
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _bucketed(self, values: Any, rows: int, width: int, pad: int) -> Any:
        """`values` (batch x length) padded to `width` with `pad`, and to `rows` rows with
        copies of its first row, on the model's device."""
        torch = self._torch
        if values is None:
            return torch.zeros((rows, width), dtype=torch.long, device=self._device)
        values = torch.nn.functional.pad(values, (0, width - values.shape[1]), value=pad)
        if rows > values.shape[0]:
            values = torch.cat([values, values[:1].expand(rows - values.shape[0], -1)])
        return values.to(self._device, non_blocking=True)
