"""The `providers` section: one upstream each, its preset, credentials and parameter rules.

Cloud providers authenticate with their cloud's own credentials instead of an API key:
`aws` (Bedrock, SigV4 from the standard AWS credential chain), `gcp` (Vertex AI, OAuth
tokens from a service account or Application Default Credentials) and `azure_ad` (Azure
OpenAI with Entra ID client credentials instead of an `api-key`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gateway.providers.presets import PRESETS, ProviderKind, ProviderPreset
from gateway.section import ConfigSection


class Timeouts(ConfigSection):
    """Upstream timeouts, in seconds."""

    connect: float = Field(5.0, gt=0, description="TCP/TLS connect")
    first_token: float = Field(
        60.0, gt=0, description="until the first streamed chunk, and between later chunks"
    )
    total: float = Field(600.0, gt=0, description="whole request, streams included")


class AwsSettings(ConfigSection):
    """Where and as whom Bedrock is called. Credentials not given here come from the standard
    AWS chain (environment, shared credentials / config file and `profile`, SSO, web
    identity, container and instance metadata), refreshed by botocore when they expire."""

    region: str | None = Field(None, description="e.g. us-east-1; default: AWS_REGION")
    profile: str | None = Field(None, description="a profile of the shared config files")
    access_key_id: str | None = Field(None, description="static keys; prefer the chain")
    secret_access_key: str | None = None
    session_token: str | None = None
    inference_profile: Literal["us", "eu", "apac", "us-gov", "global"] | None = Field(
        None,
        description="prefix bare model ids with this cross-region inference profile geography",
    )

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> AwsSettings:
        if (self.access_key_id is None) != (self.secret_access_key is None):
            raise ValueError("access_key_id and secret_access_key go together")
        return self


class GcpSettings(ConfigSection):
    """Which Google Cloud project and location Vertex AI is called in, and as whom."""

    project: str | None = Field(None, description="default: GOOGLE_CLOUD_PROJECT")
    location: str = Field("global", description="a region such as europe-west4, or global")
    credentials_file: str | None = Field(
        None,
        description="service-account JSON; default: Application Default Credentials",
    )


class AzureAdSettings(ConfigSection):
    """Entra ID (Azure AD) client credentials: raygate's app registration gets tokens for
    Azure OpenAI instead of sending an `api-key`."""

    tenant_id: str = Field(min_length=1)
    client_id: str = Field(min_length=1)
    client_secret: str = Field(min_length=1)
    authority_host: str = Field(
        "https://login.microsoftonline.com", description="another cloud's authority, or a test's"
    )
    scope: str = "https://cognitiveservices.azure.com/.default"


DropParams = bool | list[str]
"""Parameters to drop instead of refusing: all a target cannot honour (true), or those named."""


class ProviderConfig(ConfigSection):
    """One upstream: an OpenAI-compatible server, Anthropic, Gemini, Bedrock, Vertex AI,
    Azure OpenAI or Cohere, usually described by a preset."""

    preset: str | None = Field(None, description="name from providers/presets.yaml")
    kind: ProviderKind | None = Field(None, description="wire format; defaults to the preset's")
    base_url: str | None = Field(None, description="defaults to the preset's")
    api_key: str | None = Field(None, description="defaults to the preset's api_key_env")
    api_version: str | None = Field(None, description="Azure api-version / Anthropic version")
    headers: dict[str, str] = Field(default_factory=dict, description="sent on every call")
    timeouts: Timeouts = Field(default_factory=Timeouts)
    max_connections: int = Field(100, gt=0, description="httpx pool size")
    idle_connection_s: float = Field(
        4.0,
        gt=0,
        description="a pooled connection idle this long is closed; keep it below the "
        "upstream's own keep-alive timeout (uvicorn's is 5 s, gunicorn's 2 s)",
    )
    aws: AwsSettings | None = Field(None, description="Bedrock: region and credentials")
    gcp: GcpSettings | None = Field(None, description="Vertex AI: project, location, account")
    azure_ad: AzureAdSettings | None = Field(
        None, description="Azure OpenAI: Entra ID client credentials instead of an api-key"
    )
    unsupported_params: list[str] | None = Field(
        None, description="replaces the preset's list of parameters refused before the call"
    )
    reasoning_models: list[str] | None = Field(
        None, description="replaces the preset's reasoning-model name patterns (shell style)"
    )
    extra_params: list[str] | None = Field(
        None,
        description="fields outside the OpenAI wire model passed on to this provider, beyond "
        "its wire format's own (gateway/providers/extra_params.yaml); never one carrying text",
    )
    drop_params: DropParams = Field(
        False, description="drop parameters this provider cannot honour instead of a 400"
    )
    responses_api: bool | None = Field(
        None,
        description="sets or clears the preset's responses_api: /v1/responses requests are "
        "sent natively to `{base_url}/responses` (openai wire format only)",
    )

    @field_validator("preset")
    @classmethod
    def _known_preset(cls, value: str | None) -> str | None:
        if value is not None and value not in PRESETS:
            raise ValueError(f"unknown preset {value!r}; known: {', '.join(sorted(PRESETS))}")
        return value

    @model_validator(mode="after")
    def _kind_and_url(self) -> ProviderConfig:
        if self.preset is None and self.kind is None:
            raise ValueError("a provider without a preset needs both kind and base_url")
        if self.preset is None and self.base_url is None and self.kind not in _CLOUD_URLS:
            raise ValueError("a provider without a preset needs both kind and base_url")
        preset = self.resolved_preset
        if preset.responses_api and preset.kind != "openai":
            raise ValueError(
                f"responses_api needs the openai wire format, not {preset.kind!r} (for Azure "
                "OpenAI, the azure-v1 preset)"
            )
        return self

    @property
    def resolved_preset(self) -> ProviderPreset:
        """The preset merged under this provider's own settings (a cloud provider's base URL
        follows from its region or location)."""
        base = PRESETS[self.preset] if self.preset else wire_defaults(self.kind or "openai")
        update: dict[str, object] = {
            k: v for k, v in {"kind": self.kind, "base_url": self.base_url}.items() if v is not None
        }
        for field in ("unsupported_params", "reasoning_models", "extra_params", "responses_api"):
            if getattr(self, field) is not None:
                update[field] = getattr(self, field)
        kind = self.kind or base.kind
        if self.base_url is None and kind in _CLOUD_URLS:
            update["base_url"] = self._cloud_url(kind)
        return base.model_copy(update=update)

    def _cloud_url(self, kind: ProviderKind) -> str | None:
        if kind == "bedrock":
            region = self.aws.region if self.aws else None
            return f"https://bedrock-runtime.{region}.amazonaws.com" if region else None
        location = self.gcp.location if self.gcp else "global"
        if location == "global":
            return "https://aiplatform.googleapis.com"
        if location in ("us", "eu"):  # multi-region endpoints
            return f"https://aiplatform.{location}.rep.googleapis.com"
        return f"https://{location}-aiplatform.googleapis.com"

    def resolved_api_key(self) -> str:
        """The key (filled from the preset's environment variable at load time), or ''."""
        return self.api_key or ""

    def fill_from_env(self, env: Mapping[str, str]) -> None:
        """Take what the file leaves out from the environment, as each cloud's own tools do:
        the preset's key variable, AWS_REGION / AWS_DEFAULT_REGION, GOOGLE_CLOUD_PROJECT."""
        preset = self.resolved_preset
        if self.api_key is None and preset.api_key_env:
            self.api_key = env.get(preset.api_key_env) or None
        if preset.kind == "bedrock":
            self.aws = self.aws or AwsSettings()
            if self.aws.region is None:
                self.aws.region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        if preset.kind in ("vertex", "vertex-anthropic"):
            self.gcp = self.gcp or GcpSettings()
            if self.gcp.project is None:
                self.gcp.project = env.get("GOOGLE_CLOUD_PROJECT") or None

    def disabled_reason(self) -> str | None:
        """Why this provider is switched off (a needed key, region or URL is missing), or
        None. Cloud credential chains are not walked here: that may take network calls, and
        happens on the first request (a missing credential is then a 502 naming it)."""
        preset = self.resolved_preset
        if preset.kind == "bedrock" and not (self.aws and self.aws.region):
            return "aws.region (or AWS_REGION) is not set"
        if preset.kind in ("vertex", "vertex-anthropic") and not (self.gcp and self.gcp.project):
            return "gcp.project (or GOOGLE_CLOUD_PROJECT) is not set"
        cloud_auth = self.azure_ad is not None or preset.kind in _CLOUD_URLS
        if preset.requires_key and not cloud_auth and not self.resolved_api_key():
            source = preset.api_key_env or "api_key"
            return f"{source} is not set"
        if not preset.base_url:
            return "base_url is not set"
        return None


_CLOUD_URLS: frozenset[str] = frozenset({"bedrock", "vertex", "vertex-anthropic"})

_WIRE_FIELDS = ("auth", "endpoints", "unsupported_params")
"""What a wire format's own preset says of every upstream that speaks it."""


def wire_defaults(kind: ProviderKind) -> ProviderPreset:
    """The preset of a provider configured by `kind` alone: how the wire format takes its key,
    what it serves and what it cannot honour, from the preset of that name (so `drop_params`
    has a list to drop from); never its URL, key variable or model names."""
    own = PRESETS.get(kind)
    fields = own.model_dump(include=set(_WIRE_FIELDS)) if own else {}
    return ProviderPreset(kind=kind, **fields)
