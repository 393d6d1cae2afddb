"""Rate limits: requests and tokens per minute per key, user, group and model, counted in
Redis (shared by every replica) or in-process. Plain async Python; no Ray."""
