"""How the gateway reaches an LDAP / Active Directory server: the `auth.ldap` config section.

Kept apart from the client so that loading the config tree never imports ldap3.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from gateway.section import ConfigSection


class LdapAttributes(ConfigSection):
    """Which directory attribute fills each Principal field (defaults: OpenLDAP inetOrgPerson).

    Active Directory: user_id "sAMAccountName", department "department", display_name
    "displayName"; memberOf is the same.
    """

    user_id: str = Field("uid", description="the stable user id (Principal.user_id)")
    email: str = Field("mail", description="Principal.email")
    display_name: str = Field("cn", description="Principal.display_name")
    department: str = Field("departmentNumber", description="Principal.department")
    title: str = Field("title", description="Principal.title")
    member_of: str | None = Field(
        "memberOf", description="DNs of the user's groups, if the server keeps them; null: off"
    )


class LdapConfig(ConfigSection):
    """A directory that authenticates users (search-then-bind or direct bind) and names their
    groups. Exactly one of `user_search_base` and `user_dn_template` picks the mode."""

    url: str = Field(description="ldap://host:389 or ldaps://host:636")
    start_tls: bool = Field(False, description="upgrade an ldap:// connection with StartTLS")
    ca_file: str | None = Field(
        None, description="CA bundle that verifies the server (LDAPS / StartTLS); system CAs else"
    )
    bind_dn: str | None = Field(
        None, description="service account for searches; anonymous searches when unset"
    )
    bind_password: str | None = Field(None, description="the service account's password")
    user_search_base: str | None = Field(
        None, description="search-then-bind: where users are searched for"
    )
    user_filter: str = Field(
        "(uid={username})", description="finds one user; {username} is RFC 4515-escaped"
    )
    user_dn_template: str | None = Field(
        None,
        description="direct bind: e.g. uid={username},ou=people,dc=example,dc=org "
        "({username} is RFC 4514-escaped)",
    )
    group_search_base: str | None = Field(
        None, description="where groups are searched for; memberOf alone when unset"
    )
    group_filter: str = Field(
        "(member={user_dn})",
        description="a user's (or group's) groups; {user_dn} and {username} are escaped",
    )
    group_name_attribute: str = Field("cn", description="the group attribute used as its name")
    nested_groups: bool = Field(True, description="also count groups that contain the groups")
    nested_group_depth: int = Field(
        8, ge=1, le=32, description="levels of group-in-group followed (1: direct groups only)"
    )
    attributes: LdapAttributes = Field(default_factory=LdapAttributes)
    pool_size: int = Field(
        8, ge=1, le=64, description="worker threads, each with one search and one login connection"
    )
    timeout_s: float = Field(
        5.0, gt=0, description="connect timeout; reads wait this long rounded up to whole seconds"
    )
    cache_ttl_s: float = Field(
        60.0, ge=0, description="how long lookups and successful logins are reused; 0: off"
    )

    @field_validator(
        "bind_dn",
        "bind_password",
        "ca_file",
        "user_search_base",
        "user_dn_template",
        "group_search_base",
        mode="before",
    )
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        # `${VAR:-}` in YAML gives "": a setting that is switched off, not an empty one.
        return None if value == "" else value

    @field_validator("url")
    @classmethod
    def _ldap_url(cls, url: str) -> str:
        if not url.lower().startswith(("ldap://", "ldaps://")):
            raise ValueError("expected ldap://host[:port] or ldaps://host[:port]")
        return url

    @field_validator("user_filter")
    @classmethod
    def _user_filter(cls, text: str) -> str:
        if "{username}" not in text or not text.startswith("("):
            raise ValueError("expected a parenthesised filter containing {username}")
        return text

    @field_validator("group_filter")
    @classmethod
    def _group_filter(cls, text: str) -> str:
        if not ("{user_dn}" in text or "{username}" in text) or not text.startswith("("):
            raise ValueError("expected a parenthesised filter containing {user_dn} or {username}")
        return text

    @model_validator(mode="after")
    def _one_mode(self) -> LdapConfig:
        if (self.user_search_base is None) == (self.user_dn_template is None):
            raise ValueError("set exactly one of user_search_base and user_dn_template")
        if self.user_dn_template is not None and "{username}" not in self.user_dn_template:
            raise ValueError("user_dn_template must contain {username}")
        # A DN with an empty password is an "unauthenticated bind": servers answer success
        # without checking anything, so a service account must come with a password.
        if self.bind_dn is not None and not self.bind_password:
            raise ValueError("bind_dn needs bind_password")
        if self.start_tls and self.url.lower().startswith("ldaps://"):
            raise ValueError("start_tls is for ldap:// URLs; ldaps:// is TLS already")
        return self

    @property
    def uses_tls(self) -> bool:
        """Whether connections are encrypted (LDAPS or StartTLS)."""
        return self.start_tls or self.url.lower().startswith("ldaps://")
