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
    # As MindIE finds its server (ranktable_config.cpp:164): container_ip == MIES_CONTAINER_IP or
    # server_id == HOST_IP; the master is the server holding rank_id 0.
    python3 - "$RANK_TABLE_FILE" "${MIES_CONTAINER_IP:-}" "${HOST_IP:-}" "${MINDIE_PACK_ROLE:-}" <<'PY'
import json, sys
path, container_ip, host_ip, role = sys.argv[1:5]
servers = json.load(open(path))["server_list"]
mine = [s for s in servers if s.get("container_ip") == container_ip or (host_ip and s["server_id"] == host_ip)]
masters = [s for s in servers if any(str(d["rank_id"]) == "0" for d in s["device"])]
expected = masters if role == "master" else [s for s in servers if s not in masters]
if not mine or mine[0] not in expected:
    sys.exit(f"mindie-pack: this {role} pod runs on {container_ip or host_ip or '(no address)'}, which is not its "
             f"server in {path} ({', '.join(s.get('container_ip') or s['server_id'] for s in expected) or 'none'}); "
             "check the node names given to `mindie-pack k8s render`")
print(f"mindie-pack: {role} on {container_ip or host_ip}, rank table {path} ({len(servers)} servers)")
PY
fi
mkdir -p "$MINDIE_PACK_WORKDIR"
cd "$MINDIE_PACK_WORKDIR"
exec $MINDIE_PACK_DAEMON
