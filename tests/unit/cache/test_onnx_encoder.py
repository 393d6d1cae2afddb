"""The embedder on ONNX Runtime (gateway/cache/onnx_encoder.py): the CPU default.

Its embeddings must be sentence-transformers' own, whatever the batch's lengths, order and
truncation; a runtime that fails or a model that does not export leaves the embedder on
PyTorch with the same embeddings.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from gateway.cache import onnx_encoder as module
from gateway.cache.embedder import Embedder, default_model_path
from gateway.cache.onnx_encoder import exported, graph_cache, onnx_encoder

TEXTS = [
    "How do I reset my password?",
    "What is the capital of France, and how long has it been the capital?",
    "hi",
    "Which contractors may reach the staging cluster from home, and through which VPN?",
    "word " * 400,  # past MiniLM's 256 tokens: truncated as sentence-transformers truncates
    "Does the dog bite the man?",
]


def eager(embedder: Embedder, texts: list[str]) -> np.ndarray:
    return np.asarray(embedder._model.encode(texts, normalize_embeddings=True))


def test_the_cpu_embedder_runs_on_onnx_runtime(embedder: Embedder) -> None:
    assert embedder.runtime == "onnxruntime"
    # Exporting left the PyTorch model (the fallback, and CUDA graphs' source) in eval mode.
    assert not any(module.training for module in embedder._model.modules())


@pytest.mark.parametrize("tokens_per_run", [2048, 300, 1], ids=["one-run", "split", "rows"])
@pytest.mark.parametrize("batch_size", [1, 2, 64])
def test_embeddings_equal_sentence_transformers_in_the_order_given(
    embedder: Embedder, batch_size: int, tokens_per_run: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Runs split by padded tokens, each cut to its own longest text, change nothing.
    monkeypatch.setattr(module, "TOKENS_PER_RUN", tokens_per_run)
    configured = embedder.batch_size
    embedder.batch_size = batch_size  # batches of sorted lengths, rows put back in order
    try:
        rows = embedder.embed(TEXTS)
    finally:
        embedder.batch_size = configured
    assert rows.shape == (len(TEXTS), 384) and rows.dtype == np.float32
    assert np.allclose(np.linalg.norm(rows, axis=1), 1.0, atol=1e-5)
    cosines = (rows * eager(embedder, TEXTS)).sum(axis=1)
    assert cosines.min() > 0.9999


def test_a_failing_runtime_falls_back_to_pytorch(
    embedder: Embedder, caplog: pytest.LogCaptureFixture
) -> None:
    encoder = onnx_encoder(embedder._model, default_model_path(), threads=1)
    assert encoder is not None

    class Broken:
        def run(self, *args: object) -> None:
            raise RuntimeError("no memory for the arena")

    encoder._session = Broken()
    own = Embedder.__new__(Embedder)
    own.__dict__.update(embedder.__dict__, _onnx=encoder)
    with caplog.at_level(logging.WARNING):
        rows = own.embed(TEXTS[:3])
    assert "runs on PyTorch" in caplog.text
    assert not encoder.enabled and encoder.encode(TEXTS[:1]) is None
    assert (rows * eager(embedder, TEXTS[:3])).sum(axis=1).min() > 0.9999


def test_a_model_that_does_not_export_stays_on_pytorch(
    embedder: Embedder, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "config.json").write_text("{}")  # a folder, but no model in it
    with caplog.at_level(logging.WARNING):
        assert onnx_encoder(embedder._model, tmp_path, threads=1) is None
    assert "did not run in ONNX Runtime (the export exited with 1" in caplog.text


def test_turned_off_the_embedder_runs_on_pytorch() -> None:
    embedder = Embedder(device="cpu", onnx=False)
    assert embedder.runtime == "torch" and embedder._onnx is None
    rows = embedder.embed(TEXTS[:2])
    assert (rows * eager(embedder, TEXTS[:2])).sum(axis=1).min() > 0.9999


def test_an_exported_graph_is_kept_for_the_next_replica(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYGATE_CACHE_DIR", str(tmp_path / "cache"))
    first = exported(default_model_path())
    (kept,) = graph_cache().glob("*.onnx")
    assert kept.read_bytes() == first

    def no_export(*args: object, **kwargs: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(module.subprocess, "run", no_export)
    assert exported(default_model_path()) == first  # read from the cache folder


def test_a_changed_model_is_exported_afresh(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    before = module._fingerprint(model)
    (model / "config.json").write_text('{"hidden_size": 8}')
    assert module._fingerprint(model) != before
