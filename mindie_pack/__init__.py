"""mindie-pack: Hugging Face LLM folder -> running, verified MindIE service (MindSpore backend)."""

__version__ = "0.1.0"
