"""MiniLM's forward on a CPU through ONNX Runtime.

One text through MiniLM in eager PyTorch takes ~12 ms on two CPU cores; the same graph in
ONNX Runtime takes ~3.6 ms, and a batch of eight 13 ms against 33 (benchmarks/cache_lookup.py):
eager PyTorch dispatches each of a few hundred small operators from Python, ONNX Runtime runs
one fused, pre-planned graph. The graph is exported from the loaded model when the embedder
starts (about two seconds, through a temporary file; nothing is downloaded), so an
operator's own model runs the same way, and its embeddings equal sentence-transformers' own
(cosine > 0.9999). A model that cannot be exported, or an ONNX Runtime that fails, leaves the
embedder on PyTorch.
"""

from __future__ import annotations

import inspect
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")


class OnnxEncoder:
    """Mean-pooled, normalised embeddings of a SentenceTransformer whose modules are a
    transformer and a plain mean pooling (`graphed.mean_pooled`), through ONNX Runtime.
    `encode` returns None once the runtime has failed (the caller runs eager)."""

    def __init__(self, model: Any, *, threads: int) -> None:
        import onnxruntime
        import torch

        self._model = model
        transformer = model[0].auto_model
        accepted = inspect.signature(transformer.forward).parameters
        self._inputs = [name for name in INPUTS if name in accepted]
        sample = model.preprocess(["an example sentence"])
        args = tuple(sample[name] for name in self._inputs)
        axes = {name: {0: "batch", 1: "tokens"} for name in (*self._inputs, "hidden")}
        with (
            tempfile.TemporaryDirectory(prefix="raygate-embedder-") as folder,
            warnings.catch_warnings(),
            torch.no_grad(),
        ):
            # The tracer warns about Python branches on shapes; the axes above keep them free.
            warnings.simplefilter("ignore")
            path = Path(folder) / "model.onnx"
            torch.onnx.export(
                _last_hidden(transformer, self._inputs), args, path,
                input_names=self._inputs, output_names=["hidden"], dynamic_axes=axes,
                opset_version=17, dynamo=False,
            )  # fmt: skip
            graph = path.read_bytes()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # Idle pool threads sleep rather than spin: the cores are shared with other replicas.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self.enabled = True

    def encode(self, texts: list[str]) -> np.ndarray | None:
        """One normalised float32 row per text (tokenised, padded and truncated exactly as
        sentence-transformers does), or None when the runtime is off."""
        if not self.enabled:
            return None
        features = self._model.preprocess(texts)
        feeds = {name: features[name].numpy() for name in self._inputs}
        try:
            (hidden,) = self._session.run(["hidden"], feeds)
        except Exception:
            log.warning("ONNX Runtime off for the embedder; it runs on PyTorch", exc_info=True)
            self.enabled = False
            return None
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        mean = (hidden * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        return np.ascontiguousarray(mean, dtype=np.float32)


def onnx_encoder(model: Any, *, threads: int) -> OnnxEncoder | None:
    """An `OnnxEncoder` for `model`, or None (logged) when ONNX Runtime is not installed or the
    model does not export."""
    try:
        return OnnxEncoder(model, threads=threads)
    except Exception:
        log.warning("embedder on PyTorch: its model did not run in ONNX Runtime", exc_info=True)
        return None


def _last_hidden(transformer: Any, names: list[str]) -> Any:
    """A module returning `transformer`'s last hidden state from positional inputs in the
    order of `names`, as the exporter calls it."""
    import torch

    class LastHidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, *inputs: Any) -> Any:
            return self.transformer(**dict(zip(names, inputs, strict=True))).last_hidden_state

    # In eval mode: the exporter restores the wrapper's mode when it is done, and a new
    # module's is training, which would leave the shared model's dropout on.
    return LastHidden().eval()
