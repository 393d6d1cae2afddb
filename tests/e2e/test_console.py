"""The admin console in a real browser (headless Chromium) against a running gateway: real
traffic first (chat requests, a cache hit, a redaction and a block), then the console signs
in, shows that traffic on every page, issues and revokes a key, and runs a policy dry run;
last, "Sign in with SSO" goes through the test identity provider and back, signed in.

Every page is saved as a screenshot in a temporary folder; with RAYGATE_CONSOLE_SCREENSHOTS
set (e.g. `docs/console`), the documented ones are written there too.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver import Chrome
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.expected_conditions import staleness_of
from selenium.webdriver.support.ui import WebDriverWait

from tests.e2e.conftest import Gateway
from tests.servers.oidc_issuer import OidcIssuer
from tests.support.browser import headless_chromium

CARD = "4111 1111 1111 1111"
SECRET = "sk-proj-" + "Ab3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5oQ7s"
CACHED = "Which port does HTTPS use by default?"
CHATS = 5
DOCUMENTED = ("overview", "audit", "keys", "policy", "routing")  # written to the docs folder

# Each row of a console table as {column: text} (cells carry data-col).
_ROWS = """
return [...document.querySelectorAll(`#${arguments[0]} tbody tr[data-key]`)].map(row =>
  Object.fromEntries([...row.cells].map(cell => [cell.dataset.col, cell.textContent])));
"""


@dataclass(frozen=True)
class Traffic:
    """What was sent before the console opened: one user's requests and a contractor's block,
    all in one department of their own."""

    user: str
    contractor: str
    department: str
    requests: int


def _issue(gateway: Gateway, user: str, department: str, group: str) -> openai.OpenAI:
    issued = gateway.cli(
        "keys", "issue", "--user", user, "--department", department, "--group", group
    )
    assert issued.returncode == 0, issued.stderr
    found = re.search(r"secret: (rg-\S+)", issued.stdout)
    assert found
    return openai.OpenAI(base_url=gateway.v1, api_key=found.group(1), max_retries=0)


def _say(client: openai.OpenAI, text: str, model: str = "sim-small") -> dict[str, str]:
    raw = client.chat.completions.with_raw_response.create(
        model=model, messages=[{"role": "user", "content": text}]
    )
    return dict(raw.headers)


def _audited(gateway: Gateway, want: int, **filters: str) -> None:
    """Wait until `want` records match `filters` (the writer commits them off the request path)."""
    deadline = time.monotonic() + 20
    admin = {"authorization": f"Bearer {gateway.admin_key}"}
    with httpx.Client(base_url=gateway.base_url, headers=admin) as http:
        while True:
            records = http.get("/admin/audit/records", params=filters).json()["records"]
            if len(records) >= want:
                return
            assert time.monotonic() < deadline, f"{len(records)} of {want} records: {filters}"
            http.get("/healthz")  # a round trip, then look again


@pytest.fixture(scope="module")
def traffic(gateway: Gateway) -> Traffic:
    suffix = uuid.uuid4().hex[:8]
    user, contractor, department = f"ada-{suffix}", f"cy-{suffix}", f"research-{suffix}"
    client = _issue(gateway, user, department, "analysts")
    for n in range(CHATS):
        _say(client, f"Summarise this quarter's research plan, part {n}")
    assert _say(client, CACHED, model="cached-small")["x-raygate-cache"] == "miss"
    assert _say(client, CACHED, model="cached-small")["x-raygate-cache"] == "exact"
    _say(client, f"Deploy with my key {SECRET}")  # the default profile redacts it
    with pytest.raises(openai.PermissionDeniedError):  # the strict profile blocks a card
        _say(_issue(gateway, contractor, department, "contractors"), f"Charge {CARD}")
    _audited(gateway, CHATS + 3, user=user)
    _audited(gateway, 1, user=contractor)
    return Traffic(user, contractor, department, requests=CHATS + 4)


@dataclass
class Console:
    """The console in a browser, signed in with the admin key on demand."""

    driver: Chrome
    gateway: Gateway
    shots: Path

    def wait(self, condition: Callable[[Chrome], Any], timeout: float = 20) -> Any:
        waiting = WebDriverWait(
            self.driver, timeout, ignored_exceptions=(StaleElementReferenceException,)
        )
        return waiting.until(condition)

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def shown(self, css: str) -> bool:
        return any(e.is_displayed() for e in self.driver.find_elements(By.CSS_SELECTOR, css))

    def sign_in(self, secret: str) -> None:
        self.driver.get(f"{self.gateway.base_url}/console")
        self.driver.execute_script("sessionStorage.clear()")
        self.driver.refresh()
        self.wait(lambda _: self.shown("#signin-secret"))
        self.find("#signin-secret").send_keys(secret)
        self.find("#signin-form button[type=submit]").click()

    def open(self, page: str) -> WebElement:
        """Go to `page` and wait until it has loaded; sign in first when signed out."""
        if not self.shown("#app"):
            self.sign_in(self.gateway.admin_key)
            self.wait(lambda _: self.shown("#app"))
        self.driver.get(f"{self.gateway.base_url}/console/#/{page}")
        return self.ready(page)

    def ready(self, page: str) -> WebElement:
        return self.wait(
            lambda d: d.find_element(By.CSS_SELECTOR, f"[data-page={page}][data-ready]")
        )

    def rows(self, table: str) -> list[dict[str, str]]:
        return list(self.driver.execute_script(_ROWS, table))

    def fill(self, form: str, **fields: str) -> None:
        """Type `fields` into the form's inputs (replacing what they held) and submit it."""
        for name, value in fields.items():
            control = self.find(f"#{form} [name={name}]")
            control.clear()
            control.send_keys(value)
        self.find(f"#{form} button[type=submit]").click()

    def search(self, form: str, table: str, **fields: str) -> list[dict[str, str]]:
        """Submit `form` with `fields` and wait for it to redraw `table`; its rows."""
        before = self.find(f"#{table}")
        self.fill(form, **fields)
        self.wait(staleness_of(before))
        return self.rows(table)

    def shoot(self, name: str) -> None:
        self.driver.save_screenshot(str(self.shots / f"{name}.png"))
        documented = os.environ.get("RAYGATE_CONSOLE_SCREENSHOTS")
        if documented and name in DOCUMENTED:
            Path(documented).mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(Path(documented) / f"{name}.png"))


@pytest.fixture(scope="module")
def downloads(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def console(
    gateway: Gateway, traffic: Traffic, downloads: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Console]:
    with headless_chromium(downloads) as driver:
        yield Console(driver, gateway, tmp_path_factory.mktemp("screenshots"))


def _count(text: str) -> int:
    return int(text.replace(",", ""))


def test_a_wrong_key_is_refused_with_the_gateways_own_message(console: Console) -> None:
    for secret in ("sk-not-a-key", console.gateway.api_key):  # the dev key is no admin key
        console.sign_in(secret)
        console.wait(lambda _: console.shown("#signin-error"))
        assert "needs an admin credential" in console.find("#signin-error").text
        assert not console.shown("#app")
    console.shoot("signin")


def test_the_overview_charts_the_traffic(console: Console, traffic: Traffic) -> None:
    console.open("overview")
    console.find("select[name=window] option[value='15m']").click()
    console.wait(lambda _: console.shown("[data-window='15m'] [data-total=requests]"))
    requests = _count(console.find("[data-total=requests] strong").text)
    assert requests >= traffic.requests
    assert console.find("[data-total=hit-rate] strong").text.endswith("%")
    assert console.find("[data-total=errors] strong").text != "0"  # the block
    bars = console.driver.find_elements(By.CSS_SELECTOR, "[data-chart=requests] rect.s0")
    assert sum(float(b.get_attribute("data-value") or 0) for b in bars) == requests
    assert console.driver.find_elements(By.CSS_SELECTOR, "[data-chart=latency] circle.dot")
    models = {row["key"]: row for row in console.rows("by-model")}
    assert {"sim-small", "cached-small"} <= set(models)
    console.shoot("overview")


def test_audit_search_finds_the_users_requests_and_exports_them(
    console: Console, traffic: Traffic, downloads: Path
) -> None:
    console.open("audit")
    rows = console.search("audit-search", "audit-table", user=traffic.user)
    assert {r["user"] for r in rows} == {traffic.user}
    assert {r["model"] for r in rows} == {"sim-small", "cached-small"}
    assert sum(r["cache"] == "exact" for r in rows) == 1
    redacted = [r for r in rows if r["policy"].startswith("redact")]
    assert len(redacted) == 1
    console.shoot("audit")
    (blocked,) = console.search(
        "audit-search", "audit-table", user="", department=traffic.department, action="block"
    )
    assert blocked["user"] == traffic.contractor
    assert (blocked["status"], blocked["policy"].split()[0]) == ("403", "block")
    console.find("#export-csv").click()
    export = downloads / "raygate-audit.csv"
    console.wait(lambda _: export.exists() and traffic.contractor in export.read_text())


def test_a_key_issued_in_the_console_works_until_it_is_revoked_there(
    console: Console, gateway: Gateway
) -> None:
    owner = f"issued-{uuid.uuid4().hex[:8]}"
    console.open("keys")
    console.fill("issue-form", user=owner, name="console test", groups="analysts")
    secret = console.wait(lambda _: console.find("#issued-secret").text or None)
    models = httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {secret}"})
    assert models.status_code == 200
    (row,) = console.wait(lambda _: [r for r in console.rows("keys-table") if r["user"] == owner])
    assert row["state"] == "active"
    console.shoot("keys")
    buttons = console.driver.find_elements(By.CSS_SELECTOR, f"tr[data-key='{row['id']}'] button")
    (button,) = [b for b in buttons if b.text == "Revoke"]
    button.click()  # once to arm it...
    console.wait(lambda _: button.text == "Confirm revoke")
    button.click()  # ...and once to revoke
    console.wait(lambda _: not [r for r in console.rows("keys-table") if r["user"] == owner])
    refused = httpx.get(f"{gateway.v1}/models", headers={"authorization": f"Bearer {secret}"})
    assert refused.status_code == 401


def test_the_policy_dry_run_explains_a_block_and_a_redaction(console: Console) -> None:
    console.open("policy")
    console.fill("policy-form", text=f"Please charge {CARD}", groups="contractors")
    console.wait(lambda _: console.find("#policy-action").text == "block")
    assert console.find("#policy-profile").text == "strict"
    assert any("CREDIT_CARD" in r["rule"] for r in console.rows("policy-decisions"))
    console.shoot("policy")
    console.fill("policy-form", text=f"Deploy with {SECRET}", groups="")
    console.wait(lambda _: console.find("#policy-action").text == "redact")
    assert SECRET not in console.find("#policy-redacted").text


def test_the_cache_page_lists_the_entry_and_invalidates_it(
    console: Console, traffic: Traffic
) -> None:
    console.open("cache")
    # The trail keeps prompts as hashes, so the page shows the entry's prompt as one.
    stored = f"sha256:{hashlib.sha256(CACHED.encode()).hexdigest()[:12]}…"
    rows = console.search("cache-filter", "cache-table", model="cached-small")
    assert {r["model"] for r in rows} == {"cached-small"}
    (entry,) = [r for r in rows if r["prompt"] == stored]
    console.shoot("cache")
    console.find(f"#cache-table tr[data-key='{entry['id']}'] button").click()
    console.wait(
        lambda _: f"Entry {entry['id']} invalidated" in console.find("#cache-message").text
    )
    assert not [r for r in console.rows("cache-table") if r["prompt"] == stored]


def test_routing_shows_every_replicas_targets_and_their_breakers(console: Console) -> None:
    page = console.open("routing")
    replicas = page.find_elements(By.CSS_SELECTOR, "section[data-replica]")
    assert replicas, "no router replica's table: the page fell back to one replica's view"
    table = replicas[0].find_element(By.TAG_NAME, "table").get_attribute("id")
    targets = {r["target"]: r for r in console.rows(str(table))}
    assert targets["simulator/sim-small"]["breaker"] == "closed"
    assert "published" in replicas[0].find_element(By.TAG_NAME, "h2").text
    aliases = {r["alias"]: r for r in console.rows("aliases-table")}
    assert aliases["sim-fallback"]["targets"] == "nowhere/sim-gone, simulator/sim-backup"
    console.shoot("routing")


def test_users_and_groups_show_the_key_owners_and_their_activity(
    console: Console, traffic: Traffic
) -> None:
    console.open("users")
    users = {r["user"]: r for r in console.rows("users-table")}
    assert users[traffic.user]["department"] == traffic.department
    activity = {r["key"]: r for r in console.rows("activity-users")}
    assert _count(activity[traffic.user]["count"]) == traffic.requests - 1  # not the block
    console.shoot("users")


def test_signing_out_forgets_the_credential(console: Console) -> None:
    console.open("overview")
    console.find("#signout").click()
    console.wait(lambda _: console.shown("#signin-secret"))
    assert console.driver.execute_script("return sessionStorage.length") == 0


def test_sign_in_with_sso_lands_on_the_console_as_the_identity_providers_admin(
    console: Console, oidc_issuer: OidcIssuer
) -> None:
    user = f"sso-{uuid.uuid4().hex[:8]}"
    oidc_issuer.login_as({"sub": user, "realm_access": {"roles": ["raygate-admin"]}})
    console.driver.get(f"{console.gateway.base_url}/console/")
    console.driver.execute_script("sessionStorage.clear()")
    console.driver.refresh()
    console.wait(lambda _: console.shown("#signin-sso"))
    console.shoot("signin-sso")
    console.find("#signin-sso").click()  # to the gateway, the issuer, the gateway and back
    console.ready("overview")
    assert console.find("#who").text == f"{user} · admin"
    assert "token=" not in console.driver.current_url  # moved into sessionStorage
    assert console.driver.execute_script("return sessionStorage.length") == 1
    console.find("#signout").click()
    console.wait(lambda _: console.shown("#signin-secret"))
