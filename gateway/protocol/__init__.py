"""Wire formats, one module per API: OpenAI, Anthropic Messages."""
