"""Provider keys set at run time: stored only sealed, listed without the key, read again by
each replica at most once per interval, and a failed read keeps the last keys; on SQLite and
PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import GatewayConfig, parse_config
from gateway.errors import InvalidRequest
from gateway.providers.keys import KeyedConfig, ProviderKeyStore
from gateway.storage import Database
from gateway.storage.keyring import Keyring, new_secret
from gateway.storage.sealing import Sealer
from tests.servers.postgres import postgres_server, postgres_url  # noqa: F401 (fixtures)

DATA_KEY = f"k1:{new_secret()}"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'gw.db'}"
    return str(request.getfixturevalue("postgres_url"))


def config(url: str, interval: float = 2.0) -> GatewayConfig:
    return parse_config(
        f"""
storage: {{url: "{url}", data_key: "{DATA_KEY}"}}
routing: {{key_sync_interval_s: {interval}}}
providers:
  openai: {{preset: openai, base_url: "http://sim/v1"}}
models:
  gpt: {{targets: [openai/sim-small]}}
""",
        env={},
    )


def store(url: str, data_key: str | None = DATA_KEY) -> ProviderKeyStore:
    sealer = Sealer.from_keyring(Keyring.parse(data_key, name="k")) if data_key else None
    return ProviderKeyStore(Database(url), sealer, clock=lambda: 1e9)


def test_a_key_is_stored_sealed_and_listed_by_its_last_characters(url: str) -> None:
    keys = store(url)
    info = keys.set("openai", "sk-live-0123456789", by="alice")
    assert (info.hint, info.updated_by) == ("...6789", "alice")
    assert keys.keys() == {"openai": "sk-live-0123456789"}
    assert [i.as_dict() for i in keys.list()] == [info.as_dict()]
    raw = Database(url).fetchall("SELECT * FROM provider_keys")
    assert "sk-live-0123456789" not in repr(raw)
    assert keys.remove("openai") and not keys.remove("openai")
    assert keys.keys() == {}


def test_without_a_data_key_no_key_is_stored(url: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        store(url, data_key=None).set("openai", "sk-1", by="alice")
    assert refused.value.code == "provider_keys_not_enabled"


@pytest.mark.parametrize("bad", ["", "  ", "sk-1\r\nx-evil: 1", "sk 1", "sk-\x001"])
def test_a_key_that_cannot_be_one_header_value_is_refused(url: str, bad: str) -> None:
    with pytest.raises(InvalidRequest, match="api_key"):
        store(url).set("openai", bad, by="alice")


@pytest.mark.asyncio
async def test_the_config_follows_the_keys_once_per_interval(url: str) -> None:
    now = [0.0]
    keyed = KeyedConfig(config(url), store(url), clock=lambda: now[0])
    seen: list[GatewayConfig] = []

    async def listener(changed: GatewayConfig) -> None:
        seen.append(changed)

    keyed.on_change(listener)
    assert "openai" not in (await keyed.fresh()).enabled_providers()  # no OPENAI_API_KEY
    store(url).set("openai", "sk-new", by="alice")
    now[0] = 1.0  # within the interval: not read again
    assert "openai" not in (await keyed.fresh()).enabled_providers()
    now[0] = 2.0
    current = await keyed.fresh()
    assert current.providers["openai"].api_key == "sk-new"
    assert "gpt" in current.enabled_models() and seen == [current]
    assert [i.hint for i in keyed.infos] == ["...-new"]
    now[0] = 4.0  # nothing changed: no listener call
    assert await keyed.fresh() is current and len(seen) == 1
    store(url).remove("openai")
    now[0] = 6.0
    assert "openai" not in (await keyed.fresh()).enabled_providers()  # the config's again


@pytest.mark.asyncio
async def test_a_key_that_does_not_open_keeps_the_last_keys(url: str) -> None:
    now = [0.0]
    keyed = KeyedConfig(config(url, interval=0), store(url), clock=lambda: now[0])
    store(url).set("openai", "sk-good", by="alice")
    assert (await keyed.fresh()).providers["openai"].api_key == "sk-good"
    store(url, data_key=f"k2:{new_secret()}").set("openai", "sk-other", by="mallory")
    now[0] = 1.0
    assert (await keyed.fresh()).providers["openai"].api_key == "sk-good"
