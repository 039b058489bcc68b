#!/usr/bin/env bash
# The main job on the bundled example, on any machine (no NPU needed):
#   tiny Qwen2-shaped model -> build for 2 NPUs -> verify (incl. a CPU run against the source)
#   -> MindIE emulator -> deploy -> smoke checks -> stop.
# On an Ascend host, replace the emulator's --mindie-home with the real mindie-service folder.
# Usage: run-example.sh [MINDIE_PACK] [PYTHON]   (the Makefile passes the virtualenv's executables)
set -euo pipefail
PACK=${1:-mindie-pack}
HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${EXAMPLE_WORK:-$HERE/work}
PORT=${EXAMPLE_PORT:-18025}
mkdir -p "$WORK"
export MINDIE_PACK_STATE_DIR=$WORK/state

cleanup() { "$PACK" stop >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "== 1. tiny Hugging Face model -> $WORK/tiny-qwen2"
rm -rf "$WORK/tiny-qwen2"
"$PACK" tiny-model "$WORK/tiny-qwen2" --family qwen2 --shards 2

echo "== 2. build for tp 2 -> $WORK/model"
"$PACK" build --model "$WORK/tiny-qwen2" --output "$WORK/model" --tp 2 --name tiny-qwen2 --force

echo "== 3. verify against the source (bit-exact shards, then a greedy run on CPU)"
"$PACK" verify "$WORK/model" --reference "$WORK/tiny-qwen2" --run --tokens 8

echo "== 4. MindIE emulator -> $WORK/Ascend"
rm -rf "$WORK/Ascend"
"$PACK" emulator install "$WORK/Ascend" --npus 2

echo "== 5. deploy on port $PORT"
"$PACK" stop >/dev/null 2>&1 || true
"$PACK" deploy --model-dir "$WORK/model" --mindie-home "$WORK/Ascend/mindie/latest/mindie-service" \
    --port "$PORT" --timeout 300
"$PACK" status

echo "== 6. smoke checks"
"$PACK" smoke

echo "== 7. stop"
"$PACK" stop
trap - EXIT
echo "example done: $WORK/model built, deployed on the emulator, checked and stopped"
