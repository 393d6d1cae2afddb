"""Routing: model aliases over provider targets.

`router.Router` is the entry point; `strategies` orders an alias's targets, `failover` tries
them (with `retry`), `breaker` and `health` take failing targets out of rotation and bring
them back, `context` matches callers against `when` / `unless` conditions.
"""
