"""An upstream simulator speaking the OpenAI (chat and Responses), Anthropic, Gemini, Azure
OpenAI, Bedrock, Vertex AI and Cohere wire formats.

It serves deterministic answers with configurable latency and injectable faults, for the
gateway's tests, benchmarks and embedded default upstream.
"""

from gateway.simulator.app import create_app
from gateway.simulator.cli import main
from gateway.simulator.faults import Fault
from gateway.simulator.settings import SimulatorSettings

__all__ = ["Fault", "SimulatorSettings", "create_app", "main"]
