#!/usr/bin/env bash
# Worker hosts on one machine: Linux network namespaces on a private bridge, each with
# its own address, reaching PostgreSQL and RabbitMQ on the host side through forwarders
# that listen on the bridge's address for the run only. Needs root (or CAP_NET_ADMIN and
# CAP_SYS_ADMIN), iproute2 and socat.
#
#   deploy/fleet-sim.sh up N          make hosts rushes-h1 … rushes-hN (idempotent)
#   deploy/fleet-sim.sh run K CMD…    run CMD on host K (its own network, host name rushes-hK)
#   deploy/fleet-sim.sh link K down|up  cut or restore host K's network (its processes keep running)
#   deploy/fleet-sim.sh down          remove everything `up` made
#   deploy/fleet-sim.sh status        list the hosts and forwarders
#
# Hosts reach the services at $FLEET_GATEWAY (10.77.0.1 by default): PostgreSQL on
# 5432 and RabbitMQ on 5672, forwarded to 127.0.0.1. Everything made is named with the
# prefix `rushes-` or `rsh` and is removed by `down`; `up` removes it too when it fails
# or is interrupted.
set -euo pipefail

NET=${FLEET_NET:-10.77.0}
GATEWAY=${FLEET_GATEWAY:-$NET.1}
BRIDGE=${FLEET_BRIDGE:-rshbr0}
FORWARD=${FLEET_FORWARD:-5432 5672}
STATE=${FLEET_STATE:-/run/rushes-fleet-sim}

say() { printf '%s\n' "$*" >&2; }
die() { say "fleet-sim: $*"; exit 1; }

hosts() { ip netns list 2>/dev/null | awk '{print $1}' | grep -E '^rushes-h[0-9]+$' || true; }

need() {
  [ "$(id -u)" = 0 ] || die "needs root (network namespaces and a bridge)"
  command -v ip >/dev/null || die "needs iproute2 (ip)"
  if ! command -v socat >/dev/null; then
    command -v apt-get >/dev/null || die "needs socat"
    say "fleet-sim: installing socat"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq socat >/dev/null || die "cannot install socat"
  fi
}

down() {
  if [ -d "$STATE" ]; then
    for pidfile in "$STATE"/*.pid; do
      [ -e "$pidfile" ] || continue
      kill "$(cat "$pidfile")" 2>/dev/null || true
      rm -f "$pidfile"
    done
  fi
  for ns in $(hosts); do
    # Whatever still runs on the host goes with it.
    for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
    ip link del "rsh-${ns#rushes-}" 2>/dev/null || true
    ip netns del "$ns" 2>/dev/null || true
  done
  ip link del "$BRIDGE" 2>/dev/null || true
  rm -rf "$STATE"
}

up() {
  local n=$1
  [[ $n =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le 200 ] || die "up needs a host count (1-200), got '$n'"
  need
  trap 'say "fleet-sim: setting up failed; removing what was made"; down' ERR INT TERM
  mkdir -p "$STATE"
  if ! ip link show "$BRIDGE" >/dev/null 2>&1; then
    ip link add "$BRIDGE" type bridge
    ip addr add "$GATEWAY/24" dev "$BRIDGE"
    ip link set "$BRIDGE" up
  fi
  for port in $FORWARD; do
    [ -e "$STATE/forward-$port.pid" ] && kill -0 "$(cat "$STATE/forward-$port.pid")" 2>/dev/null && continue
    socat -lf "$STATE/forward-$port.log" "TCP-LISTEN:$port,bind=$GATEWAY,fork,reuseaddr,nodelay" "TCP:127.0.0.1:$port,nodelay" &
    echo $! >"$STATE/forward-$port.pid"
  done
  for k in $(seq 1 "$n"); do
    local ns=rushes-h$k veth=rsh-h$k
    ip netns list | grep -qw "$ns" && continue
    ip netns add "$ns"
    ip link add "$veth" type veth peer name eth0 netns "$ns"
    ip link set "$veth" master "$BRIDGE" up
    ip -n "$ns" addr add "$NET.$((10 + k))/24" dev eth0
    ip -n "$ns" link set lo up
    ip -n "$ns" link set eth0 up
    ip -n "$ns" route add default via "$GATEWAY"
  done
  # The forwarders answer once they listen.
  for port in $FORWARD; do
    for _ in $(seq 50); do
      ip netns exec rushes-h1 bash -c "exec 3<>/dev/tcp/$GATEWAY/$port" 2>/dev/null && break
      sleep 0.1
    done
  done
  trap - ERR INT TERM
  say "fleet-sim: $n hosts up (rushes-h1…rushes-h$n on $NET.0/24, services at $GATEWAY)"
}

run() {
  local k=$1; shift
  ip netns list | grep -qw "rushes-h$k" || die "no host rushes-h$k (run 'up' first)"
  # Its own UTS namespace too, so the process sees (and reports) its own host name.
  exec ip netns exec "rushes-h$k" unshare --uts sh -c 'hostname "$0" && exec "$@"' "rushes-h$k" "$@"
}

link() {
  local k=$1 state=$2
  [ "$state" = up ] || [ "$state" = down ] || die "link K up|down"
  ip netns exec "rushes-h$k" ip link set eth0 "$state"
}

case "${1:-}" in
  up) up "${2:-}" ;;
  down) down ;;
  run) [ $# -ge 3 ] || die "run K CMD…"; shift; run "$@" ;;
  link) [ $# -eq 3 ] || die "link K up|down"; link "$2" "$3" ;;
  status)
    for ns in $(hosts); do echo "$ns $(ip -n "$ns" -4 -o addr show eth0 | awk '{print $4}') $(ip -n "$ns" -o link show eth0 | grep -o 'state [A-Z]*')"; done
    ls "$STATE" 2>/dev/null | sed 's/^/forwarder /' ;;
  *) sed -n '2,17p' "$0"; exit 2 ;;
esac
