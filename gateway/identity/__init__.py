"""Who is calling: the Principal carried through every stage, and how it is established."""

from gateway.identity.principal import Principal

__all__ = ["Principal"]
