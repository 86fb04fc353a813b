#!/usr/bin/env bash
# A virtual LAN of H hosts on this machine, each a network namespace with one
# skyhop node, joined by a bridge that lives in a namespace of its own.
# The nodes find each other by mDNS alone (no bootstrap address), then a chat
# message is relayed across hosts. Everything is torn down on exit or failure.
#
# Usage: scripts/lan-netns.sh [H]        (H >= 3, default 4; needs root and `ip netns`)
# Env:   SKYHOP_BIN   the skyhop binary (default: target/debug/skyhop, built if missing)
#        KEEP_SECONDS keep the LAN up this long after the check (default 0)
set -euo pipefail

H="${1:-4}"
if ! [[ "$H" =~ ^[0-9]+$ ]] || [ "$H" -lt 3 ] || [ "$H" -gt 50 ]; then
    echo "lan-netns: H must be a number from 3 to 50, got '$H'" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "lan-netns: needs root to create network namespaces" >&2
    exit 2
fi
if ! ip netns list >/dev/null 2>&1; then
    echo "lan-netns: 'ip netns' is not available (install iproute2)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SKYHOP_BIN:-$ROOT/target/debug/skyhop}"
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build -q -p skyhop-node --bin skyhop)
fi

# Unique names per run, so that parallel runs never touch each other.
RUN="sh$$$(printf '%04x' $((RANDOM % 65536)))"
BRNS="${RUN}br"
WORK="$(mktemp -d /tmp/skyhop-lan.XXXXXX)"
PIDS=()

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for i in $(seq 1 "$H"); do ip netns del "${RUN}h$i" 2>/dev/null; done
    ip netns del "$BRNS" 2>/dev/null
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

ip netns add "$BRNS"
ip -n "$BRNS" link add br0 type bridge
ip -n "$BRNS" link set br0 up
for i in $(seq 1 "$H"); do
    ns="${RUN}h$i"
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    # The veth pair is created inside the host namespace, then one end moves
    # to the bridge namespace: nothing is ever made in the root namespace.
    ip -n "$ns" link add eth0 type veth peer name "p$i"
    ip -n "$ns" link set "p$i" netns "$BRNS"
    ip -n "$BRNS" link set "p$i" master br0
    ip -n "$BRNS" link set "p$i" up
    ip -n "$ns" addr add "198.18.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    # mDNS needs a multicast route on the LAN interface.
    ip -n "$ns" route add 224.0.0.0/4 dev eth0 2>/dev/null || true
done

SUPERNODES=$(( H / 3 > 0 ? H / 3 : 1 ))
for i in $(seq 1 "$H"); do
    ns="${RUN}h$i"
    role=ordinary
    [ "$i" -le "$SUPERNODES" ] && role=supernode
    mkdir -p "$WORK/h$i"
    ip netns exec "$ns" "$BIN" run --role "$role" \
        --listen "/ip4/198.18.0.$((10 + i))/tcp/4001" \
        --mdns on --data-dir "$WORK/h$i" --control 127.0.0.1:0 \
        >"$WORK/h$i.log" 2>&1 &
    PIDS+=("$!")
    echo "host $i: namespace $ns, 198.18.0.$((10 + i)), $role"
done

status() { ip netns exec "${RUN}h$1" "$BIN" status --json --data-dir "$WORK/h$1" 2>/dev/null; }

# Wait (bounded) until every ordinary host is attached to a supernode.
attached=0
for _ in $(seq 1 60); do
    attached=0
    for i in $(seq $((SUPERNODES + 1)) "$H"); do
        if status "$i" | grep -q '"primary": *"[0-9a-f]'; then attached=$((attached + 1)); fi
    done
    [ "$attached" -eq $((H - SUPERNODES)) ] && break
    sleep 1
done
if [ "$attached" -ne $((H - SUPERNODES)) ]; then
    echo "lan-netns: only $attached of $((H - SUPERNODES)) ordinary hosts attached within 60 s" >&2
    for i in $(seq 1 "$H"); do echo "--- host $i log"; tail -n 20 "$WORK/h$i.log"; done >&2
    exit 1
fi
echo "all $((H - SUPERNODES)) ordinary hosts attached through mDNS discovery"

# Chat across hosts: the last host writes to the one after the supernodes.
FROM="$H"
TO=$((SUPERNODES + 1))
TO_ID="$(status "$TO" | sed -n 's/.*"id": *"\([0-9a-f]\{64\}\)".*/\1/p' | head -n 1)"
if [ -z "$TO_ID" ]; then
    echo "lan-netns: could not read host $TO's node id" >&2
    exit 1
fi
if ip netns exec "${RUN}h$FROM" "$BIN" send --data-dir "$WORK/h$FROM" --to "$TO_ID" "hello across the LAN from host $FROM"; then
    echo "chat from host $FROM to host $TO delivered"
else
    echo "lan-netns: chat from host $FROM to host $TO was not delivered" >&2
    exit 1
fi
sleep "${KEEP_SECONDS:-0}"
