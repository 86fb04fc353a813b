#!/usr/bin/env bash
# Auto role behind a NAT, on a virtual LAN of network namespaces: a seed
# supernode (2 clients) and one public `--role auto` host on a bridge in
# 198.18.0.0/24, and N hosts behind a NAT router (nftables masquerade from
# 10.0.0.0/24 to the router's 198.18.0.254). Every auto node offers 2
# clients, so the seed turns people away: the public host is dialed back,
# finds itself reachable and promotes; the NATed hosts are not (the seed's
# dial-back to the router's address finds no listener), never promote, and
# still attach and chat. Everything is torn down on exit or failure.
#
# Usage: scripts/nat-netns.sh [N]   (2 <= N <= 20 NATed hosts, default 3;
#        needs root, `ip netns` and `nft`)
# Env:   SKYHOP_BIN   the skyhop binary (default: target/debug/skyhop)
set -euo pipefail

N="${1:-3}"
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -lt 2 ] || [ "$N" -gt 20 ]; then
    echo "nat-netns: N must be a number from 2 to 20, got '$N'" >&2
    exit 2
fi
if [ "$(id -u)" != 0 ]; then
    echo "nat-netns: needs root to create network namespaces" >&2
    exit 2
fi
if ! ip netns list >/dev/null 2>&1; then
    echo "nat-netns: 'ip netns' is not available (install iproute2)" >&2
    exit 2
fi
if ! command -v nft >/dev/null; then
    echo "nat-netns: 'nft' is not available (install nftables)" >&2
    exit 2
fi

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BIN="${SKYHOP_BIN:-$ROOT/target/debug/skyhop}"
if [ ! -x "$BIN" ]; then
    (cd "$ROOT" && cargo build -q -p skyhop-node --bin skyhop)
fi

RUN="nt$$$(printf '%04x' $((RANDOM % 65536)))"
BRNS="${RUN}br"
NATNS="${RUN}nat"
WORK="$(mktemp -d /tmp/skyhop-nat.XXXXXX)"
PIDS=()
NSS=("$BRNS" "$NATNS")

cleanup() {
    set +e
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
    sleep 0.5
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null; done
    for ns in "${NSS[@]}"; do ip netns del "$ns" 2>/dev/null; done
    rm -rf "$WORK"
}
trap cleanup EXIT INT TERM

# The public segment: a bridge in a namespace of its own.
ip netns add "$BRNS"
ip -n "$BRNS" link add br0 type bridge
ip -n "$BRNS" link set br0 up
public_port() { # namespace, port name, address
    ip -n "$1" link add eth0 type veth peer name "$2"
    ip -n "$1" link set "$2" netns "$BRNS"
    ip -n "$BRNS" link set "$2" master br0
    ip -n "$BRNS" link set "$2" up
    ip -n "$1" addr add "$3/24" dev eth0
    ip -n "$1" link set eth0 up
}
for h in seed pub; do
    ns="${RUN}$h"
    NSS+=("$ns")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
done
public_port "${RUN}seed" pseed 198.18.0.1
public_port "${RUN}pub" ppub 198.18.0.2

# The NAT router: public side on the bridge, a LAN bridge for the hosts.
ip netns add "$NATNS"
ip -n "$NATNS" link set lo up
public_port "$NATNS" pnat 198.18.0.254
ip -n "$NATNS" link add lan0 type bridge
ip -n "$NATNS" addr add 10.0.0.1/24 dev lan0
ip -n "$NATNS" link set lan0 up
ip netns exec "$NATNS" sysctl -q -w net.ipv4.ip_forward=1
ip netns exec "$NATNS" nft -f - <<'EOF'
table ip nat {
    chain postrouting {
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.0.0.0/24 oifname "eth0" masquerade
    }
}
EOF
for i in $(seq 1 "$N"); do
    ns="${RUN}n$i"
    NSS+=("$ns")
    ip netns add "$ns"
    ip -n "$ns" link set lo up
    ip -n "$ns" link add eth0 type veth peer name "l$i"
    ip -n "$ns" link set "l$i" netns "$NATNS"
    ip -n "$NATNS" link set "l$i" master lan0
    ip -n "$NATNS" link set "l$i" up
    ip -n "$ns" addr add "10.0.0.$((10 + i))/24" dev eth0
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via 10.0.0.1
done

# Fast promotion for a handful of nodes (the defaults suit thousands).
printf '[node.auto_role]\nmin_uptime = 5000000\npromote_per_mille = 1000\n' >"$WORK/auto.toml"

start() { # name, namespace, address, role, extra args...
    local name="$1" ns="$2" addr="$3" role="$4"
    shift 4
    mkdir -p "$WORK/$name"
    ip netns exec "$ns" "$BIN" run --role "$role" --max-clients 2 \
        --listen "/ip4/$addr/tcp/4001" --mdns off --data-dir "$WORK/$name" "$@" \
        >"$WORK/$name.log" 2>&1 &
    PIDS+=("$!")
}
start seed "${RUN}seed" 198.18.0.1 supernode
for _ in $(seq 1 50); do
    SEED="$(sed -n 's/^listening *//p' "$WORK/seed.log" | head -n 1)"
    [ -n "$SEED" ] && break
    sleep 0.1
done
if [ -z "$SEED" ]; then
    echo "nat-netns: the seed did not start; its log:" >&2
    cat "$WORK/seed.log" >&2
    exit 1
fi
echo "seed supernode $SEED"
status() { "$BIN" status --json --data-dir "$WORK/$1" 2>/dev/null | tr -d ' \n'; }
field() { # name, field: a string value
    status "$1" | sed -n "s/.*\"$2\":\"\\([^\"]*\\)\".*/\\1/p"
}
in_overlay() { # attached, or a supernode
    local s
    s="$(status "$1")"
    [[ "$s" == *'"primary":"'* || "$s" == *'"role":"Supernode"'* ]]
}

# The public host first, attached before the NATed hosts come: the seed
# takes 2 clients, and a host it turns away cannot ask it for a dial-back
# (only attached clients ask), so a public host left stranded would never
# learn it is reachable.
start pub "${RUN}pub" 198.18.0.2 auto --bootstrap "$SEED" --config "$WORK/auto.toml"
for _ in $(seq 1 300); do
    in_overlay pub && break
    sleep 0.1
done
for i in $(seq 1 "$N"); do
    start "n$i" "${RUN}n$i" "10.0.0.$((10 + i))" auto --bootstrap "$SEED" --config "$WORK/auto.toml"
done

# Wait (bounded) until the public host promoted and every NATed host is
# attached and has learned it is unreachable.
ok=0
for _ in $(seq 1 90); do
    ok=1
    [ "$(field pub role)" = Supernode ] || ok=0
    for i in $(seq 1 "$N"); do
        in_overlay "n$i" || ok=0
        [ "$(field "n$i" reachability)" = unreachable ] || ok=0
    done
    [ "$ok" = 1 ] && break
    sleep 1
done
report() {
    for h in seed pub $(seq -f 'n%g' 1 "$N"); do
        echo "--- $h: role $(field "$h" role), reachability $(field "$h" reachability), primary $(field "$h" primary)"
        grep -E "reachable|promoted|attached|dial" "$WORK/$h.log" | tail -n 5 || true
    done
}
if [ "$ok" != 1 ]; then
    echo "nat-netns: within 90 s the public host did not promote, or a NATed host is not attached and known unreachable" >&2
    report >&2
    exit 1
fi
report
for i in $(seq 1 "$N"); do
    if [ "$(field "n$i" role)" != Ordinary ] || grep -q "promoted to supernode" "$WORK/n$i.log"; then
        echo "nat-netns: NATed host n$i promoted" >&2
        exit 1
    fi
done
echo "public host promoted; no NATed host promoted"

# Chats between NATed hosts, through the overlay.
for i in $(seq 1 "$N"); do
    j=$(( i % N + 1 ))
    TO_ID="$(field "n$j" id)"
    if "$BIN" send --data-dir "$WORK/n$i" --to "$TO_ID" "hello from behind the NAT, n$i"; then
        echo "chat from NATed host n$i to NATed host n$j delivered"
    else
        echo "nat-netns: chat from n$i to n$j was not delivered" >&2
        report >&2
        exit 1
    fi
done
echo "every NATed host chatted"
