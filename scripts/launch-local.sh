#!/usr/bin/env bash
# Launch N skyhop nodes on 127.0.0.1 (K of them supernodes, the others
# `--role auto`), each a
# `skyhop run` process with its data dir under a fresh temp dir, and print
# how to talk to them. `stop` kills the nodes this script started and
# removes the temp dir.
#
# Usage: scripts/launch-local.sh N [--supernodes K]   (1 <= N <= 100; default K: 1 per 5 nodes, at least 1)
#        scripts/launch-local.sh stop
# Env:   SKYHOP_BIN  the skyhop binary (default: target/release/skyhop if built, else target/debug/skyhop)
set -euo pipefail

STATE="${TMPDIR:-/tmp}/skyhop-local.current"
ROOT="$(cd "$(dirname "$0")/.." && pwd)"

usage() {
    echo "usage: $0 N [--supernodes K] | $0 stop" >&2
    exit 2
}

stop() {
    if [ ! -f "$STATE" ]; then
        echo "launch-local: nothing to stop (no $STATE)"
        return 0
    fi
    local dir
    dir="$(cat "$STATE")"
    for pidfile in "$dir"/n*/pid; do
        [ -f "$pidfile" ] || continue
        local pid
        pid="$(cat "$pidfile")"
        # SIGTERM: each node leaves gracefully and saves its host cache.
        kill -TERM "$pid" 2>/dev/null || true
    done
    for pidfile in "$dir"/n*/pid; do
        [ -f "$pidfile" ] || continue
        local pid waited=0
        pid="$(cat "$pidfile")"
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 50 ]; do
            sleep 0.1
            waited=$((waited + 1))
        done
        kill -KILL "$pid" 2>/dev/null || true
    done
    case "$dir" in
        */skyhop-local.*) rm -rf "$dir" ;;
    esac
    rm -f "$STATE"
    echo "launch-local: stopped and removed $dir"
}

[ $# -ge 1 ] || usage
if [ "$1" = stop ]; then
    stop
    exit 0
fi

N="$1"
shift
K=""
while [ $# -gt 0 ]; do
    case "$1" in
        --supernodes) [ $# -ge 2 ] || usage; K="$2"; shift 2 ;;
        *) usage ;;
    esac
done
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ "$N" -lt 1 ] || [ "$N" -gt 100 ]; then
    echo "launch-local: N must be a number from 1 to 100, got '$N'" >&2
    exit 2
fi
if [ -z "$K" ]; then
    K=$(( N / 5 ))
    [ "$K" -ge 1 ] || K=1
fi
if ! [[ "$K" =~ ^[0-9]+$ ]] || [ "$K" -lt 1 ] || [ "$K" -gt "$N" ]; then
    echo "launch-local: --supernodes must be from 1 to N ($N), got '$K'" >&2
    exit 2
fi
if [ -f "$STATE" ]; then
    echo "launch-local: nodes from an earlier launch are running ($(cat "$STATE")); run '$0 stop' first" >&2
    exit 1
fi

BIN="${SKYHOP_BIN:-}"
if [ -z "$BIN" ]; then
    if [ -x "$ROOT/target/release/skyhop" ]; then
        BIN="$ROOT/target/release/skyhop"
    else
        BIN="$ROOT/target/debug/skyhop"
        [ -x "$BIN" ] || (cd "$ROOT" && cargo build -q -p skyhop-node --bin skyhop)
    fi
fi

DIR="$(mktemp -d "${TMPDIR:-/tmp}/skyhop-local.XXXXXX")"
echo "$DIR" > "$STATE"

# Waits (at most 10 s) for node $1 to print its control address.
wait_ready() {
    local out="$DIR/n$1/out" tries=0
    while ! grep -q '^control' "$out" 2>/dev/null; do
        sleep 0.1
        tries=$((tries + 1))
        if [ "$tries" -ge 100 ]; then
            echo "launch-local: node $1 did not start; its log:" >&2
            cat "$DIR/n$1/log" >&2 || true
            stop
            exit 1
        fi
    done
}

launch() { # index role bootstrap...
    local i="$1" role="$2"
    shift 2
    mkdir -p "$DIR/n$i"
    local boot=()
    for b in "$@"; do boot+=(--bootstrap "$b"); done
    "$BIN" run --role "$role" --listen /ip4/127.0.0.1/tcp/0 --mdns off \
        --data-dir "$DIR/n$i" --control 127.0.0.1:0 "${boot[@]}" \
        >"$DIR/n$i/out" 2>"$DIR/n$i/log" &
    echo $! > "$DIR/n$i/pid"
    wait_ready "$i"
}

SN_ADDRS=()
for i in $(seq 1 "$K"); do
    if [ "$i" = 1 ]; then launch 1 supernode; else launch "$i" supernode "${SN_ADDRS[0]}"; fi
    SN_ADDRS+=("$(sed -n 's/^listening *//p' "$DIR/n$i/out" | head -n 1)")
done
for i in $(seq $((K + 1)) "$N"); do
    launch "$i" auto "${SN_ADDRS[$(( (i - 1) % K ))]}"
done

echo "launch-local: $N nodes ($K supernodes) running, data under $DIR"
for i in $(seq 1 "$N"); do
    id="$(sed -n 's/^node id *//p' "$DIR/n$i/out")"
    role="$(sed -n 's/^role *//p' "$DIR/n$i/out")"
    printf '  n%-3s %-9s %s  --data-dir %s\n' "$i" "$role" "$id" "$DIR/n$i"
done
LAST="$N"
FIRST=$((K + 1)); [ "$FIRST" -le "$N" ] || FIRST=1
cat <<MSG

Talk to them:
  $BIN chat --data-dir $DIR/n$FIRST          # then: /to <id or prefix>, a line sends
  $BIN send --data-dir $DIR/n$FIRST --to $(sed -n 's/^node id *//p' "$DIR/n$LAST/out") "hello"
  $BIN status --data-dir $DIR/n$FIRST
Stop them:
  $0 stop
MSG
