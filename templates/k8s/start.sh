#!/bin/bash
# mindie-pack's container entrypoint for Kubernetes (shipped in the ConfigMap; data, not a template).
# 1. source the image's own set_env.sh scripts (MINDIE_PACK_SET_ENV, in order; a missing one is skipped);
# 2. on a multi-node deployment, check that this pod runs on the rank-table server its role expects
#    (master = server_list[0], workers = the others) and export the node's environment;
# 3. exec the MindIE daemon from a writable working directory (it writes kernel_meta/ into the cwd),
#    so the daemon is PID 1 and the container ends when it ends.
set -o pipefail
for script in ${MINDIE_PACK_SET_ENV:-}; do
    if [ -f "$script" ]; then
        # shellcheck disable=SC1090
        source "$script"
    fi
done
set -eu
if [ -n "${RANK_TABLE_FILE:-}" ]; then
    python3 - "$RANK_TABLE_FILE" "${MIES_CONTAINER_IP:-}" "${MINDIE_PACK_ROLE:-}" <<'PY'
import json, sys
path, ip, role = sys.argv[1:4]
servers = [s["server_id"] for s in json.load(open(path))["server_list"]]
expected = servers[:1] if role == "master" else servers[1:]
if ip not in expected:
    sys.exit(f"mindie-pack: this {role} pod runs on {ip or '(no MIES_CONTAINER_IP)'}, which is not its server in "
             f"{path} ({', '.join(expected) or 'none'}); check the node names given to `mindie-pack k8s render`")
print(f"mindie-pack: {role} on {ip}, rank table {path} ({len(servers)} servers)")
PY
fi
mkdir -p "$MINDIE_PACK_WORKDIR"
cd "$MINDIE_PACK_WORKDIR"
exec $MINDIE_PACK_DAEMON
