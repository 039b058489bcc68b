"""Back to Hugging Face: `mindie-pack export SRC --to hf`."""
