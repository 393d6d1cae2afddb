"""MiniLM's forward on a CPU through ONNX Runtime.

One text through MiniLM in eager PyTorch takes ~7 ms on two CPU cores; the same graph in
ONNX Runtime ~3 ms, and eight texts 15 ms against 26 (benchmarks/cache_lookup.py): eager
PyTorch dispatches each of a few hundred small operators from Python, ONNX Runtime runs one
fused, pre-planned graph. Its embeddings equal sentence-transformers' own (cosine > 0.9999).

The graph is exported from the model's own folder when the embedder first starts on a
machine, in a child process (`python -m gateway.cache.onnx_encoder MODEL OUT`, ~10 s on two
cores; nothing is downloaded), so an operator's own model runs the same way and the
exporter's ~200 MB of tracing state leaves with the child. The graph is kept in a cache
folder (`graph_cache`), named after the model's files and torch's version, so later replicas
load it at once. A model that cannot be exported, or an ONNX Runtime that fails, leaves the
embedder on PyTorch.

Memory: a batch of 64 long texts in one run needs ~1 GB of buffers, which ONNX Runtime's
arena and glibc (its mmap threshold grows with the largest block freed) would both keep. The
encoder runs at most TOKENS_PER_RUN padded tokens at a time and fixes glibc's threshold at
4 MB for its process, so a replica grows by ~140 MB after loading, where eager PyTorch grows
by ~200 (benchmarks/embedder_memory.py).
"""

from __future__ import annotations

import ctypes
import hashlib
import inspect
import logging
import os
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

INPUTS = ("input_ids", "attention_mask", "token_type_ids")
EXPORT_TIMEOUT_S = 300
EXPORT_VERSION = 1  # raise when `export` changes what it writes
# Padded tokens per ONNX Runtime run (8 texts of MiniLM's 256): bounds the largest run's
# buffers (attention grows with rows x length^2) at a few tens of MB; short texts still run
# 64 at a time.
TOKENS_PER_RUN = 2048
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 4 << 20


class OnnxEncoder:
    """Mean-pooled, normalised embeddings of a SentenceTransformer whose modules are a
    transformer and a plain mean pooling (`graphed.mean_pooled`), through ONNX Runtime.
    `model` tokenises; `graph` is its transformer exported (`exported`). `encode` returns
    None once the runtime has failed (the caller runs eager)."""

    def __init__(self, model: Any, graph: bytes, *, threads: int) -> None:
        import onnxruntime

        self._model = model
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only
        # Idle pool threads sleep rather than spin: the cores are shared with other replicas.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # Every batch has its own shape: per-shape memory plans would pile up. The arena
        # keeps the largest run's buffers, which TOKENS_PER_RUN bounds.
        options.enable_mem_pattern = False
        self._session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self._inputs = [i.name for i in self._session.get_inputs()]
        # Padding on the right (BERT's) lets a run drop the columns no text of it reaches.
        self._right = getattr(model.tokenizer, "padding_side", "right") == "right"
        _return_large_blocks()
        self.enabled = True

    def encode(self, texts: list[str]) -> np.ndarray | None:
        """One normalised float32 row per text (tokenised, padded and truncated exactly as
        sentence-transformers does), or None when the runtime is off. Runs of at most
        TOKENS_PER_RUN padded tokens, each cut to its own longest text (give texts sorted
        by length for the least padding)."""
        if not self.enabled:
            return None
        features = self._model.preprocess(texts)
        feeds = {name: features[name].numpy() for name in self._inputs}
        mask = feeds["attention_mask"]
        rows = max(1, TOKENS_PER_RUN // mask.shape[1])
        pooled = []
        for start in range(0, len(texts), rows):
            width = int(mask[start : start + rows].sum(axis=1).max()) if self._right else None
            run = {name: v[start : start + rows, :width] for name, v in feeds.items()}
            try:
                (hidden,) = self._session.run(["hidden"], run)
            except Exception:
                log.warning("ONNX Runtime off for the embedder; it runs on PyTorch", exc_info=True)
                self.enabled = False
                return None
            pooled.append(_mean(hidden, run["attention_mask"]))
        return np.ascontiguousarray(np.concatenate(pooled), dtype=np.float32)


def _mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Normalised mean of the unmasked tokens' hidden states, per row."""
    weights = mask[..., None].astype(np.float32)
    mean = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
    mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
    return mean


def onnx_encoder(model: Any, model_path: Path, *, threads: int) -> OnnxEncoder | None:
    """An `OnnxEncoder` for `model`, loaded from `model_path`, or None (logged) when ONNX
    Runtime is not installed or the model does not export."""
    try:
        return OnnxEncoder(model, exported(model_path), threads=threads)
    except Exception as exc:
        log.warning("embedder on PyTorch: its model did not run in ONNX Runtime (%s)", exc)
        return None


def exported(model_path: Path) -> bytes:
    """The transformer of the SentenceTransformer in `model_path` as an ONNX graph: exported
    by a child process (see the module's docstring) and kept in `graph_cache()`, so that the
    next replica on this machine loads it at once; exported to a temporary folder when that
    cannot be written."""
    cached = graph_cache() / f"{_fingerprint(model_path)}.onnx"
    if cached.is_file():
        return cached.read_bytes()
    with tempfile.TemporaryDirectory(prefix="raygate-embedder-") as folder:
        out = Path(folder) / "model.onnx"
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cache.onnx_encoder", str(model_path), str(out)],
            capture_output=True,
            text=True,
            timeout=EXPORT_TIMEOUT_S,
        )
        if done.returncode != 0:
            last = done.stderr.strip().splitlines()[-1:] or ["no output"]
            raise RuntimeError(f"the export exited with {done.returncode}: {last[0]}")
        graph = out.read_bytes()
        try:  # renamed into place whole: replicas starting together never read half a file
            cached.parent.mkdir(parents=True, exist_ok=True)
            out.replace(cached)
        except OSError as exc:
            log.info("exported embedder graph not kept in %s (%s)", cached.parent, exc)
        return graph


def graph_cache() -> Path:
    """Where exported graphs are kept: `$RAYGATE_CACHE_DIR/onnx`, else the user's cache
    folder (`$XDG_CACHE_HOME` or ~/.cache)/raygate/onnx."""
    root = os.environ.get("RAYGATE_CACHE_DIR")
    if root:
        return Path(root) / "onnx"
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "raygate" / "onnx"


def _fingerprint(model_path: Path) -> str:
    """Names the model's files (path, size, modification time) and the exporting software:
    a changed model or a new torch exports afresh."""
    import torch

    digest = hashlib.sha256(f"{torch.__version__}\0{EXPORT_VERSION}".encode())
    folder = model_path.resolve()
    for file in sorted(p for p in folder.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"\0{file}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:32]


def export(model_path: Path, out: Path) -> None:
    """Write the transformer of the SentenceTransformer in `model_path` to `out` as ONNX: the
    last hidden state from the inputs it takes, batch and length left free."""
    import torch
    from sentence_transformers import SentenceTransformer

    class LastHidden(torch.nn.Module):
        """The transformer's last hidden state from positional inputs in `names`' order."""

        def __init__(self, transformer: Any, names: list[str]) -> None:
            super().__init__()
            self.transformer = transformer
            self.names = names

        def forward(self, *inputs: Any) -> Any:
            named = dict(zip(self.names, inputs, strict=True))
            return self.transformer(**named).last_hidden_state

    model = SentenceTransformer(str(model_path), device="cpu").float().eval()
    transformer: Any = model[0].auto_model
    names = [n for n in INPUTS if n in inspect.signature(transformer.forward).parameters]
    sample = model.preprocess(["an example sentence"])
    axes = {name: {0: "batch", 1: "tokens"} for name in (*names, "hidden")}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about Python branches on shapes; the axes above keep them free.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            LastHidden(transformer, names).eval(), tuple(sample[n] for n in names), out,
            input_names=names, output_names=["hidden"], dynamic_axes=axes,
            opset_version=17, dynamo=False,
        )  # fmt: skip


def _return_large_blocks() -> None:
    """Fix glibc's mmap threshold (see the module's docstring); elsewhere, nothing."""
    try:
        ctypes.CDLL("libc.so.6").mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
    except (OSError, AttributeError):  # not glibc
        pass


if __name__ == "__main__":
    export(Path(sys.argv[1]), Path(sys.argv[2]))
