"""Ray Serve deployments: thin classes that hold `gateway` objects and expose them."""
