"""Client stage: smoke checks and load benchmarks against a MindIE service (httpx)."""
