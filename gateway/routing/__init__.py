"""Routing: model aliases over provider targets."""
