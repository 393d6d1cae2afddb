"""A2A (Agent2Agent) agents through the gateway: discovery, proxy, policy, audit."""
