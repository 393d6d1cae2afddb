"""The same serving path on a GPU replica (CUDA `vllm`, the `gpu` extra): half a GPU per
replica, engine time priced as GPU-seconds. Skipped where there is no CUDA device."""

from __future__ import annotations

import re
from collections.abc import Iterator

import openai
import pytest
import yaml

from tests.e2e.local.conftest import _config
from tests.support import running_gateway

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def gpu_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    pytest.importorskip("vllm")
    from local_models.tiny import build_tiny_model

    config = _config(build_tiny_model(tmp_path_factory.mktemp("tiny-model")))
    config["local_models"]["tiny"].update(  # type: ignore[index]
        device="gpu", gpus=0.5, cpus=0.5, engine_args={"gpu_memory_utilization": 0.3}
    )
    config["pricing"] = {"gpu_second_usd": 0.001}
    path = tmp_path_factory.mktemp("gpu-config") / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with running_gateway(path, tmp_path_factory.mktemp("gpu-state")) as (base_url, _env):
        yield f"{base_url}/v1"


def test_a_gpu_replica_streams_and_prices_gpu_seconds(gpu_gateway: str) -> None:
    client = openai.OpenAI(base_url=gpu_gateway, api_key="sk-raygate-dev", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="tiny",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=16,
        extra_body={"ignore_eos": True},
    )
    assert re.match(r"^local/tiny@\w+$", raw.headers["x-raygate-route"])
    assert raw.parse().usage.completion_tokens == 16  # type: ignore[union-attr]
    assert float(raw.headers["x-raygate-cost-usd"]) > 0
