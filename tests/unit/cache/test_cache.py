"""The semantic cache end to end with the real MiniLM embedder."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.cache.cache import SemanticCache
from gateway.cache.config import CacheConfig
from gateway.cache.embedder import Embedder
from gateway.cache.keys import scope_key
from tests.unit.cache.conftest import ManualClock


def _scope(model: str = "gpt-4o-mini", user: str = "alice", system: str = "") -> str:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": "ignored"})
    return scope_key(model=model, messages=messages, params={}, isolation="user", identity=user)


@pytest.fixture
def cache(embedder: Embedder, clock: ManualClock) -> SemanticCache:
    return SemanticCache(embedder, CacheConfig(ttl_s=3600, max_entries=3), clock=clock)


def test_embedder_returns_normalised_384_wide_rows(embedder: Embedder) -> None:
    rows = embedder.embed(["one", "two three"])
    assert rows.shape == (2, 384)
    assert rows.dtype.name == "float32"
    assert abs(float((rows[0] ** 2).sum()) - 1.0) < 1e-4


def test_same_request_hits_the_exact_phase(cache: SemanticCache) -> None:
    cache.insert("What is Ray Serve?", _scope(), "answer")
    hit = cache.lookup("What is Ray Serve?", _scope())
    assert hit is not None
    assert (hit.phase, hit.response, hit.similarity) == ("exact", "answer", 1.0)
    assert cache.stats.hits["exact"] == 1


def test_the_same_request_stored_after_its_exact_phase_missed_is_still_an_exact_hit(
    cache: SemanticCache, embedder: Embedder
) -> None:
    # A cache replica's lookup embeds after phase 1 misses; another replica's answer to the
    # same request can be applied from the entry log meanwhile. Phase 3 then finds it.
    vector = embedder.embed(["What is Ray Serve?"])[0]
    cache.insert("What is Ray Serve?", _scope(), "answer")
    found = cache.lookup_semantic("What is Ray Serve?", _scope(), vector)
    assert found.hit is not None
    assert (found.hit.phase, found.hit.response, found.hit.similarity) == ("exact", "answer", 1.0)
    assert (cache.stats.hits["exact"], cache.stats.hits["semantic"]) == (1, 0)


def test_request_differing_in_case_and_filler_hits_the_normalised_phase(
    cache: SemanticCache,
) -> None:
    cache.insert("What is Ray Serve?", _scope(), "answer")
    hit = cache.lookup("Hey, please: what is RAY   serve??", _scope())
    assert hit is not None and hit.phase == "normalized"


def test_paraphrase_hits_the_semantic_phase(cache: SemanticCache) -> None:
    cache.insert("How can I learn Python quickly?", _scope(), "answer")
    hit = cache.lookup("How do I learn Python fast?", _scope(), threshold=0.8)
    assert hit is not None
    assert hit.phase == "semantic"
    assert 0.8 <= hit.similarity < 1.0


def test_other_model_system_prompt_or_user_never_hits(cache: SemanticCache) -> None:
    cache.insert("What is Ray Serve?", _scope(), "answer")
    for other in (_scope(model="gpt-4o"), _scope(user="bob"), _scope(system="Be terse.")):
        assert cache.lookup("What is Ray Serve?", other) is None
    assert cache.stats.misses == 3


def test_ineligible_request_skips_the_semantic_phase(cache: SemanticCache) -> None:
    cache.insert("How can I learn Python quickly?", _scope(), "answer")
    assert cache.lookup("How do I learn Python fast?", _scope(), eligible=False) is None
    assert cache.stats.ineligible == 1
    hit = cache.lookup("How can I learn Python quickly?", _scope(), eligible=False)
    assert hit is not None and hit.phase == "exact"


def test_semantic_hit_refused_when_numbers_differ(cache: SemanticCache) -> None:
    cache.insert("What is 15% of 200?", _scope(), "30")
    assert cache.lookup("What is 20% of 200?", _scope(), threshold=0.5) is None
    assert cache.stats.rejected_by_verification == 1


def test_verification_can_be_switched_off(embedder: Embedder) -> None:
    cache = SemanticCache(embedder, CacheConfig(verify=False))
    cache.insert("What is 15% of 200?", _scope(), "30")
    hit = cache.lookup("What is 20% of 200?", _scope(), threshold=0.5)
    assert hit is not None and hit.phase == "semantic"


def test_entries_expire_after_ttl(cache: SemanticCache, clock: ManualClock) -> None:
    cache.insert("What is Ray Serve?", _scope(), "answer")
    clock.advance(3599)
    assert cache.lookup("What is Ray Serve?", _scope()) is not None
    clock.advance(2)
    assert cache.lookup("What is Ray Serve?", _scope()) is None
    assert len(cache) == 0 and cache.stats.expired == 1


def test_least_recently_used_entry_is_evicted_first(
    cache: SemanticCache, clock: ManualClock
) -> None:
    for i, text in enumerate(["alpha question", "beta question", "gamma question"]):
        clock.advance(1)
        cache.insert(text, _scope(), str(i))
    assert cache.lookup("alpha question", _scope()) is not None  # alpha is now the newest use
    cache.insert("delta question", _scope(), "3")
    assert cache.lookup("beta question", _scope(), eligible=False) is None
    assert cache.lookup("alpha question", _scope()) is not None
    assert len(cache) == 3 and cache.stats.evicted == 1


def test_save_and_load_keep_entries(
    cache: SemanticCache, embedder: Embedder, clock: ManualClock, tmp_path: Path
) -> None:
    cache.insert("How can I learn Python quickly?", _scope(), "python")
    cache.insert("What is Ray Serve?", _scope(user="bob"), "ray")
    cache.save(tmp_path / "cache")
    restored = SemanticCache(embedder, CacheConfig(ttl_s=3600), clock=clock)
    restored.load(tmp_path / "cache")
    assert len(restored) == 2
    exact = restored.lookup("What is Ray Serve?", _scope(user="bob"))
    assert exact is not None and exact.response == "ray"
    semantic = restored.lookup("How do I learn Python fast?", _scope(), threshold=0.8)
    assert semantic is not None and semantic.response == "python"
    new_id = restored.insert("Another question", _scope(), "x")
    assert new_id > max(h.entry_id for h in (exact, semantic))


def test_reinserting_a_request_replaces_its_answer(cache: SemanticCache) -> None:
    cache.insert("What is Ray Serve?", _scope(), "old")
    cache.insert("What is Ray Serve?", _scope(), "new")
    hit = cache.lookup("What is Ray Serve?", _scope())
    assert hit is not None and hit.response == "new"
    assert len(cache) == 1


def test_same_question_in_another_conversation_does_not_hit(cache: SemanticCache) -> None:
    def conversation(topic: str) -> str:
        messages = [
            {"role": "user", "content": f"Tell me about {topic}."},
            {"role": "assistant", "content": f"{topic} is a city."},
            {"role": "user", "content": "How big is it?"},
        ]
        return scope_key(
            model="m", messages=messages, params={}, isolation="user", identity="alice"
        )

    cache.insert("How big is it?", conversation("Paris"), "105 km2")
    assert cache.lookup("How big is it?", conversation("Rome")) is None
    hit = cache.lookup("How big is it?", conversation("Paris"))
    assert hit is not None and hit.response == "105 km2"


@pytest.mark.gpu
def test_embedder_uses_half_precision_on_cuda() -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    gpu = Embedder()
    cpu_rows = Embedder(device="cpu").embed(["How do I learn Python fast?"])
    assert gpu.device == "cuda"
    rows = gpu.embed(["How do I learn Python fast?"])
    assert rows.dtype.name == "float32"
    assert float(rows[0] @ cpu_rows[0]) > 0.999
