"""The embedder's CUDA-graph path (gateway/cache/graphed.py), on the CPU.

The graphs themselves need a GPU (the `gpu` test below, and benchmarks/cache_lookup.py); what
a CPU checks is everything around them, through the same traced code: the bucketing (padding
to a length and a batch size), the masked mean pooling, the texts it declines, and that its
embeddings equal sentence-transformers' own. Small buckets keep the tracing short.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gateway.cache.embedder import Embedder, default_model_path
from gateway.cache.graphed import GraphedEncoder, mean_pooled

TEXTS = [
    "How do I reset my password?",
    "What is the capital of France, and how long has it been the capital?",
    "hi",
]


@pytest.fixture(scope="module")
def model(embedder: Embedder) -> object:
    return embedder._model


@pytest.fixture(scope="module")
def graphed(model: object) -> GraphedEncoder:
    return GraphedEncoder(model, batch_buckets=(1, 4), length_buckets=(16, 32))


def eager(model: object, texts: list[str]) -> np.ndarray:
    return np.asarray(model.encode(texts, normalize_embeddings=True))  # type: ignore[attr-defined]


def test_minilm_is_a_plain_mean_pooling(model: object) -> None:
    assert mean_pooled(model)


@pytest.mark.parametrize("texts", [TEXTS[:1], TEXTS, TEXTS[1:]], ids=["one", "three", "two"])
def test_padded_buckets_embed_as_sentence_transformers_does(
    graphed: GraphedEncoder, model: object, texts: list[str]
) -> None:
    rows = graphed.encode(texts)
    assert rows is not None and rows.shape == (len(texts), 384) and rows.dtype == np.float32
    cosines = (rows * eager(model, texts)).sum(axis=1)
    assert cosines.min() > 0.9999


def test_declines_what_no_bucket_holds(graphed: GraphedEncoder) -> None:
    assert graphed.encode(["a question"] * 5) is None  # more rows than the biggest bucket
    assert graphed.encode(["word " * 40]) is None  # longer than the longest bucket
    assert graphed.encode([]) is None


def test_a_failing_trace_turns_the_graphs_off_for_good(graphed: GraphedEncoder) -> None:
    def capture_fails(*inputs: object) -> object:
        raise RuntimeError("operation not permitted when stream is capturing")

    broken = GraphedEncoder.__new__(GraphedEncoder)
    broken.__dict__.update(graphed.__dict__)  # the same model, tokenizer and thread
    broken._forward = capture_fails
    broken.enabled = True
    assert broken.encode(TEXTS[:1]) is None
    assert broken.enabled is False
    assert broken.encode(TEXTS[:1]) is None


def test_a_torch_that_cannot_compile_leaves_the_model_eager(
    model: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch = pytest.importorskip("torch")

    def unsupported(*args: object, **kwargs: object) -> object:
        raise RuntimeError("Dynamo is not supported on this Python")

    monkeypatch.setattr(torch, "compile", unsupported)
    encoder = GraphedEncoder(model, batch_buckets=(1,), length_buckets=(16,))
    assert encoder.enabled is False
    assert encoder.encode(TEXTS[:1]) is None


def test_half_precision_weights_run_in_float32_on_a_cpu(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from safetensors.torch import load_file, save_file

    source = default_model_path()
    for item in source.iterdir():
        if item.name != "model.safetensors":
            (tmp_path / item.name).symlink_to(item)
    weights = load_file(str(source / "model.safetensors"))
    halves = {name: tensor.half().contiguous() for name, tensor in weights.items()}
    save_file(halves, tmp_path / "model.safetensors")
    embedder = Embedder(tmp_path, device="cpu")
    assert {p.dtype for p in embedder._model.parameters()} == {torch.float32}
    assert embedder._graphed is None  # graphs are for CUDA only


@pytest.mark.gpu
def test_cuda_graphs_agree_with_eager_on_a_gpu() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    embedder = Embedder()
    assert embedder._graphed is not None and embedder._graphed.enabled
    rows = embedder.embed(TEXTS)
    assert (rows * eager(embedder._model, TEXTS)).sum(axis=1).min() > 0.999
