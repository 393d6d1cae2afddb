"""Provider adapters, one per wire format (`registry.build_provider` picks one)."""
