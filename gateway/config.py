"""The gateway's configuration: one typed tree, loaded from YAML.

Secrets are `${ENV}` references (`${VAR}` must be set, `${VAR:-default}` falls back). A wrong
file fails at start with `ConfigError`, whose message names the field and the file line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from gateway.a2a.config import A2AConfig
from gateway.accounting.config import BudgetsConfig, PricingConfig
from gateway.audit.config import AuditConfig
from gateway.cache.config import CacheConfig
from gateway.identity.admin import AdminRolesConfig
from gateway.identity.ldap_config import LdapConfig
from gateway.identity.oidc_config import OidcConfig
from gateway.identity.trusted_header import TrustedHeaderConfig
from gateway.limits.config import RateLimitsConfig
from gateway.mcp.config import McpConfig
from gateway.policy.config import PolicyConfig
from gateway.providers.config import ProviderConfig
from gateway.providers.config import Timeouts as Timeouts  # re-exported: the config tree
from gateway.providers.local_config import LOCAL_PROVIDER, LocalModelConfig
from gateway.responses.config import ResponsesConfig
from gateway.routing.config import ModelAlias, RoutingConfig, Target
from gateway.section import ConfigSection
from gateway.storage.keyring import Keyring

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message says where and why."""


class AuthConfig(ConfigSection):
    """How callers prove who they are. Methods are tried in a fixed order: trusted proxy
    headers, HTTP Basic against LDAP, then a bearer secret (dev key, issued key, OIDC JWT)."""

    dev_key: str | None = Field(
        None, description="a local developer key; set only on the embedded default"
    )
    admin_key: str | None = Field(None, description="protects /admin routes")
    key_secret: str | None = Field(
        None, min_length=16, description="HMAC key for stored API-key hashes; enables issued keys"
    )
    ldap: LdapConfig | None = Field(None, description="HTTP Basic against LDAP / AD; key owners")
    oidc: OidcConfig | None = Field(None, description="bearer JWTs from an OIDC/SSO issuer")
    trusted_header: TrustedHeaderConfig | None = Field(
        None, description="identity headers from an authenticating reverse proxy"
    )
    admin_roles: AdminRolesConfig = Field(
        default_factory=AdminRolesConfig,
        description="directory groups / identity-provider roles of the admin roles",
    )

    @field_validator("dev_key", "admin_key", "key_secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `${VAR:-}` in YAML gives "": a credential that is switched off, not an empty one.
        return None if value == "" else value


class StorageConfig(ConfigSection):
    """Where users, keys and the audit trail live."""

    url: str = Field(
        "sqlite:///.raygate/raygate.db",
        description="sqlite:///relative.db, sqlite:////abs.db or postgresql://...",
    )

    data_key: str | None = Field(
        None,
        repr=False,
        description="AES-GCM keys sealing stored prompt and answer text, `id:secret[,old:...]` "
        "(first current), e.g. ${RAYGATE_DATA_KEY}; unset: stored text is in clear",
    )
    data_key_file: Path | None = Field(None, description="a file holding data_key instead")

    @field_validator("data_key", "data_key_file", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("data_key")
    @classmethod
    def _well_formed_key(cls, value: str | None) -> str | None:
        if value is not None:
            Keyring.parse(value, name="data_key")  # raises, naming the entry, never the secret
        return value

    def data_key_set(self) -> bool:
        """Whether stored text is sealed (a data key is given, inline or in a file)."""
        return self.data_key is not None or self.data_key_file is not None

    def data_keyring(self) -> Keyring | None:
        """The data keys (read from data_key_file when that is how they are given)."""
        return Keyring.load(self.data_key, self.data_key_file, name="storage.data_key")

    @field_validator("url")
    @classmethod
    def _absolute_sqlite_path(cls, url: str) -> str:
        # Serve replicas do not share the loader's working directory: pin relative paths now.
        if url.startswith("sqlite:///") and not url.startswith("sqlite:////"):
            path = url.removeprefix("sqlite:///")
            if path != ":memory:":
                return f"sqlite:///{Path(path).resolve()}"
        if not url.startswith(("sqlite://", "postgresql://", "postgres://")):
            raise ValueError("expected sqlite:///... or postgresql://...")
        return url


class GroupAccess(ConfigSection):
    """What members of a directory group may do."""

    models: list[str] = Field(
        default_factory=lambda: ["*"], description="model aliases, shell patterns allowed"
    )
    policy: str | None = Field(None, description="policy profile applied to members")


class AccessConfig(ConfigSection):
    """Group -> models / policy profile. A caller gets the union of the models of every listed
    group they are in, and the policy of the first such group in file order; a caller in no
    listed group gets `default`. Budgets and rate limits by group: `budgets`, `rate_limits`."""

    default: GroupAccess = Field(default_factory=GroupAccess)
    groups: dict[str, GroupAccess] = Field(default_factory=dict)


class LimitsConfig(ConfigSection):
    """Input limits."""

    max_body_bytes: int = Field(8 * 1024 * 1024, gt=0, description="larger bodies get 413")
    body_timeout_s: float = Field(
        60.0, gt=0, description="a body not all read within this many seconds gets 408"
    )


class DeploymentSettings(ConfigSection):
    """Ray Serve settings for one deployment."""

    num_replicas: int | Literal["auto"] = 1
    num_cpus: float = Field(0.25, ge=0)
    num_gpus: float = Field(0.0, ge=0, description="a fraction shares one GPU between replicas")
    max_ongoing_requests: int = Field(256, gt=0)
    autoscaling: dict[str, Any] | None = Field(
        None, description="Ray Serve autoscaling_config; overrides num_replicas"
    )

    def most_replicas(self) -> int | None:
        """The most replicas Serve may run (None: `auto`, Serve's own ceiling)."""
        if self.autoscaling is not None:
            return int(self.autoscaling.get("max_replicas", 1))
        return None if self.num_replicas == "auto" else self.num_replicas

    def options(self) -> dict[str, Any]:
        """Keyword arguments for `Deployment.options`."""
        actor: dict[str, Any] = {"num_cpus": self.num_cpus}
        if self.num_gpus:
            actor["num_gpus"] = self.num_gpus
        opts: dict[str, Any] = {
            "ray_actor_options": actor,
            "max_ongoing_requests": self.max_ongoing_requests,
        }
        if self.autoscaling is not None:
            opts["autoscaling_config"] = self.autoscaling
        else:
            opts["num_replicas"] = self.num_replicas
        return opts


class ServeConfig(ConfigSection):
    """Where the Serve proxy listens and how each deployment is sized."""

    host: str = "127.0.0.1"
    port: int = Field(8000, gt=0, lt=65536)
    ingress: DeploymentSettings = Field(default_factory=DeploymentSettings)
    colocate_router: bool = Field(
        True,
        description="route in each ingress replica (one Serve hop fewer per request and per "
        "streamed chunk); false: a Router deployment of its own, sized by serve.router",
    )
    router: DeploymentSettings = Field(
        default_factory=DeploymentSettings, description="with colocate_router: false"
    )
    cache: DeploymentSettings = Field(
        default_factory=lambda: DeploymentSettings(num_cpus=0.5),
        description="the embedder + FAISS cache replicas (give them num_gpus on GPU nodes)",
    )


class SimulatorConfig(ConfigSection):
    """The built-in upstream simulator that `raygate up` starts beside the gateway."""

    enabled: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8100, gt=0, lt=65536)
    latency_ms: float = Field(0.0, ge=0)
    tokens_per_s: float = Field(0.0, ge=0, description="stream pacing; 0 = unpaced")


class GatewayConfig(ConfigSection):
    """The whole configuration."""

    serve: ServeConfig = Field(default_factory=ServeConfig)
    auth: AuthConfig = Field(default_factory=AuthConfig)
    storage: StorageConfig = Field(default_factory=StorageConfig)
    access: AccessConfig = Field(default_factory=AccessConfig)
    audit: AuditConfig = Field(default_factory=AuditConfig)
    policy: PolicyConfig = Field(default_factory=PolicyConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    pricing: PricingConfig = Field(default_factory=PricingConfig)
    budgets: BudgetsConfig = Field(default_factory=BudgetsConfig)
    rate_limits: RateLimitsConfig = Field(default_factory=RateLimitsConfig)
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    simulator: SimulatorConfig = Field(default_factory=SimulatorConfig)
    responses: ResponsesConfig = Field(default_factory=ResponsesConfig)
    providers: dict[str, ProviderConfig] = Field(default_factory=dict)
    local_models: dict[Annotated[str, Field(min_length=1)], LocalModelConfig] = Field(
        default_factory=dict,
        description="vLLM replicas in the Serve app: targets local/<name>, and a model <name>",
    )
    models: dict[Annotated[str, Field(min_length=1)], ModelAlias] = Field(default_factory=dict)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    a2a: A2AConfig = Field(
        default_factory=A2AConfig, description="A2A agents reachable through /a2a/<name>"
    )
    mcp: McpConfig = Field(
        default_factory=McpConfig, description="MCP servers behind /mcp/<virtual server>"
    )

    @model_validator(mode="after")
    def _targets_name_providers(self) -> GatewayConfig:
        for alias, entry in self.models.items():
            for target in entry.targets:
                if target.provider == LOCAL_PROVIDER and self.local_models:
                    if target.model not in self.local_models:
                        raise ValueError(
                            f"model {alias!r} targets unknown local model {target.model!r}"
                        )
                elif target.provider not in self.providers:
                    raise ValueError(
                        f"model {alias!r} targets unknown provider {target.provider!r}"
                    )
        return self

    @model_validator(mode="after")
    def _policy_profiles_exist(self) -> GatewayConfig:
        if self.policy.file:
            return self  # profiles come from the file, re-read while running
        profiles = self.policy.profiles
        if self.policy.default_profile not in profiles:
            raise ValueError(
                f"policy.default_profile {self.policy.default_profile!r} is not a profile"
            )
        named = {"default": self.access.default.policy} | {
            f"groups.{g}": a.policy for g, a in self.access.groups.items()
        }
        for where, name in named.items():
            if name is not None and name not in profiles:
                raise ValueError(f"access.{where}.policy {name!r} is not a policy profile")
        return self

    @model_validator(mode="after")
    def _judge_is_a_model(self) -> GatewayConfig:
        judge = self.cache.judge.model
        if judge is not None and judge not in self.models and judge not in self.local_models:
            raise ValueError(f"cache.judge.model {judge!r} is not a model alias")
        return self

    @model_validator(mode="after")
    def _local_is_reserved(self) -> GatewayConfig:
        if self.local_models and LOCAL_PROVIDER in self.providers:
            raise ValueError(f"provider name {LOCAL_PROVIDER!r} is reserved for local_models")
        return self

    def _is_local(self, target: Target) -> bool:
        return target.provider == LOCAL_PROVIDER and target.model in self.local_models

    def with_provider_keys(self, keys: Mapping[str, str]) -> GatewayConfig:
        """This config with the keys set at run time (`gateway.providers.keys`) in place of
        the providers' own; a key for a provider the config does not name is left out."""
        if not keys:
            return self
        providers = {
            name: p.model_copy(update={"api_key": keys[name]}) if name in keys else p
            for name, p in self.providers.items()
        }
        return self.model_copy(update={"providers": providers})

    def enabled_providers(self) -> dict[str, ProviderConfig]:
        """Providers whose keys and URLs are present."""
        return {n: p for n, p in self.providers.items() if p.disabled_reason() is None}

    def enabled_models(self) -> dict[str, ModelAlias]:
        """Aliases with their targets on disabled providers dropped; empty aliases dropped;
        and one per local model that no alias is named after."""
        enabled = self.enabled_providers()
        out: dict[str, ModelAlias] = {}
        for alias, entry in self.models.items():
            targets = [t for t in entry.targets if t.provider in enabled or self._is_local(t)]
            if targets:
                out[alias] = entry.model_copy(update={"targets": targets})
        for name in self.local_models.keys() - self.models.keys():
            # A local model answers to its own name unless an alias takes that name.
            out[name] = ModelAlias(targets=[Target(provider=LOCAL_PROVIDER, model=name)])
        return out


def load_config(path: str | os.PathLike[str], env: dict[str, str] | None = None) -> GatewayConfig:
    """Read, substitute `${ENV}` references in, and validate a YAML config file."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    return parse_config(text, source=str(path), env=os.environ if env is None else env)


def parse_config(text: str, *, source: str = "<config>", env: Any = None) -> GatewayConfig:
    """Validate config text; errors name the field and the line in `source`."""
    env = os.environ if env is None else env
    loader = yaml.SafeLoader(text)
    try:
        root = loader.get_single_node()
        if root is None:
            return GatewayConfig()
        _substitute_env(root, env, source)
        data = loader.construct_document(root)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from exc
    finally:
        loader.dispose()
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:{root.start_mark.line + 1}: the top level must be a mapping")
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            line = _line_of(root, loc)
            field = ".".join(str(p) for p in loc) or "(top level)"
            problems.append(f"{source}:{line}: {field}: {err['msg']}")
        raise ConfigError("invalid configuration\n  " + "\n  ".join(problems)) from None
    for provider in config.providers.values():
        provider.fill_from_env(env)
    return config


def required_env(text: str) -> set[str]:
    """The variables config `text` references with no default (`${VAR}`, not `${VAR:-x}`)."""
    return {m.group(1) for m in _ENV_REF.finditer(text) if m.group(2) is None}


def _substitute_env(node: yaml.Node, env: Any, source: str) -> None:
    if isinstance(node, yaml.ScalarNode):
        if isinstance(node.value, str) and "${" in node.value:
            node.value = _ENV_REF.sub(lambda m: _env_value(m, env, source, node), node.value)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _substitute_env(item, env, source)
    elif isinstance(node, yaml.MappingNode):
        for _key, value in node.value:
            _substitute_env(value, env, source)


def _env_value(match: re.Match[str], env: Any, source: str, node: yaml.Node) -> str:
    name, default = match.group(1), match.group(2)
    value = env.get(name)
    if value:
        return str(value)
    if default is not None:
        return default
    line = node.start_mark.line + 1
    raise ConfigError(f"{source}:{line}: environment variable {name} is not set")


def _line_of(root: yaml.Node, loc: tuple[Any, ...]) -> int:
    """The 1-based line of the deepest YAML node along a pydantic error location."""
    node = root
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(part)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            child = node.value[part] if part < len(node.value) else None
        if child is None:
            break
        node = child
    return node.start_mark.line + 1
