"""The request formats `bench` can drive (a module of its own: the CLI lists them in --help without importing
the client)."""

ENDPOINTS = ("openai-chat", "openai-completions", "tgi", "native", "vllm")
# Seconds one request may take end to end (smoke, bench); connecting has its own 5 s bound (client/transport.py).
DEFAULT_DEADLINE_S = 120.0
