#!/usr/bin/env bash
# The main job on the bundled example: make a tiny Qwen2-shaped model (random weights, trained BPE tokenizer),
# build it for 2 NPUs (tensor parallel 2), and verify the result bit for bit against the source.
# Usage: run-example.sh [MINDIE_PACK] [PYTHON]   (the Makefile passes the virtualenv's executables)
set -euo pipefail
PACK=${1:-mindie-pack}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${EXAMPLE_WORK:-$HERE/work}
mkdir -p "$WORK"

echo "== 1. tiny Hugging Face model -> $WORK/tiny-qwen2"
rm -rf "$WORK/tiny-qwen2"
"$PACK" tiny-model "$WORK/tiny-qwen2" --family qwen2 --shards 2

echo "== 2. build for tp 2 -> $WORK/model"
"$PACK" build --model "$WORK/tiny-qwen2" --output "$WORK/model" --tp 2 --name tiny-qwen2 --force

echo "== 3. verify against the source"
"$PACK" verify "$WORK/model" --reference "$WORK/tiny-qwen2"
echo "example done: $WORK/model is ready to be MindIE's modelWeightPath"
