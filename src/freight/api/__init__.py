"""The HTTP API (FastAPI): OpenAI- and Anthropic-compatible routes under /v1."""
