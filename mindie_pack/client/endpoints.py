"""The request formats `bench` can drive (a module of its own: the CLI lists them in --help without importing
the client)."""

ENDPOINTS = ("openai-chat", "openai-completions", "tgi", "native")
