"""Provider keys set at run time: stored only sealed, listed without the key, read again by
each replica at most once per interval, and a failed read keeps the last keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.errors import InvalidRequest
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.storage import Database
from gateway.storage.keyring import Keyring, new_secret
from gateway.storage.sealing import Sealer

DATA_KEY = f"k1:{new_secret()}"


def config(tmp_path: Path, interval: float = 2.0) -> GatewayConfig:
    return parse_config(
        f"""
storage: {{url: "sqlite:///{tmp_path}/gw.db", data_key: "{DATA_KEY}"}}
routing: {{key_sync_interval_s: {interval}}}
providers:
  openai: {{preset: openai, base_url: "http://sim/v1"}}
models:
  gpt: {{targets: [openai/sim-small]}}
""",
        env={},
    )


def store(tmp_path: Path, data_key: str | None = DATA_KEY) -> ProviderKeyStore:
    sealer = Sealer.from_keyring(Keyring.parse(data_key, name="k")) if data_key else None
    return ProviderKeyStore(Database(f"sqlite:///{tmp_path}/gw.db"), sealer, clock=lambda: 1e9)


def test_a_key_is_stored_sealed_and_listed_by_its_last_characters(tmp_path: Path) -> None:
    keys = store(tmp_path)
    info = keys.set("openai", "sk-live-0123456789", by="alice")
    assert (info.hint, info.updated_by) == ("...6789", "alice")
    assert keys.keys() == {"openai": "sk-live-0123456789"}
    assert [i.as_dict() for i in keys.list()] == [info.as_dict()]
    raw = Database(f"sqlite:///{tmp_path}/gw.db").fetchall("SELECT * FROM provider_keys")
    assert "sk-live-0123456789" not in repr(raw)
    assert keys.remove("openai") and not keys.remove("openai")
    assert keys.keys() == {}


def test_without_a_data_key_no_key_is_stored(tmp_path: Path) -> None:
    with pytest.raises(InvalidRequest) as refused:
        store(tmp_path, data_key=None).set("openai", "sk-1", by="alice")
    assert refused.value.code == "provider_keys_not_enabled"


@pytest.mark.parametrize("bad", ["", "  ", "sk-1\r\nx-evil: 1", "sk 1", "sk-\x001"])
def test_a_key_that_cannot_be_one_header_value_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(InvalidRequest, match="api_key"):
        store(tmp_path).set("openai", bad, by="alice")


@pytest.mark.asyncio
async def test_the_config_follows_the_keys_once_per_interval(tmp_path: Path) -> None:
    now = [0.0]
    keyed = KeyedConfig(config(tmp_path), store(tmp_path), clock=lambda: now[0])
    seen: list[GatewayConfig] = []

    async def listener(changed: GatewayConfig) -> None:
        seen.append(changed)

    keyed.on_change(listener)
    assert "openai" not in (await keyed.fresh()).enabled_providers()  # no OPENAI_API_KEY
    store(tmp_path).set("openai", "sk-new", by="alice")
    now[0] = 1.0  # within the interval: not read again
    assert "openai" not in (await keyed.fresh()).enabled_providers()
    now[0] = 2.0
    current = await keyed.fresh()
    assert current.providers["openai"].api_key == "sk-new"
    assert "gpt" in current.enabled_models() and seen == [current]
    assert [i.hint for i in keyed.infos] == ["...-new"]
    now[0] = 4.0  # nothing changed: no listener call
    assert await keyed.fresh() is current and len(seen) == 1
    store(tmp_path).remove("openai")
    now[0] = 6.0
    assert "openai" not in (await keyed.fresh()).enabled_providers()  # the config's again


@pytest.mark.asyncio
async def test_a_key_that_does_not_open_keeps_the_last_keys(tmp_path: Path) -> None:
    now = [0.0]
    keyed = KeyedConfig(config(tmp_path, interval=0), store(tmp_path), clock=lambda: now[0])
    store(tmp_path).set("openai", "sk-good", by="alice")
    assert (await keyed.fresh()).providers["openai"].api_key == "sk-good"
    store(tmp_path, data_key=f"k2:{new_secret()}").set("openai", "sk-other", by="mallory")
    now[0] = 1.0
    assert (await keyed.fresh()).providers["openai"].api_key == "sk-good"
