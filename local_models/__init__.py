"""vLLM engines as Ray Serve deployments (local models); filled by the local-models capability."""
