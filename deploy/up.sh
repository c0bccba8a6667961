#!/usr/bin/env bash
# Brings the whole Rushes system up on this machine: installs what is missing, starts
# PostgreSQL and RabbitMQ if needed, creates the database and vhost, migrates, then
# runs control, scheduler and one worker in the foreground. Ctrl-C stops them all.
# Idempotent: run it again at any time.

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$RUSHES_ROOT"

STATE_DIR="${RUSHES_STATE_DIR:-$HOME/.local/state/rushes}"
mkdir -p "$STATE_DIR/logs"
export RUSHES_DATA_DIR="${RUSHES_DATA_DIR:-$STATE_DIR/data}"
mkdir -p "$RUSHES_DATA_DIR"

if ! as_root rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx rushes; then
    say "creating the RabbitMQ vhost rushes"
    as_root rabbitmqctl -q add_vhost rushes
    as_root rabbitmqctl -q set_permissions -p rushes guest '.*' '.*' '.*'
fi

export RUSHES_DATABASE_URL="${RUSHES_DATABASE_URL:-$RUSHES_TEST_PG/rushes}"
export RUSHES_AMQP_URL="${RUSHES_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/rushes}"
export RUSHES_HTTP_ADDR="${RUSHES_HTTP_ADDR:-127.0.0.1:8080}"
if [ -z "${RUSHES_ADMIN_TOKEN:-}" ]; then
    [ -s "$STATE_DIR/admin-token" ] || head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE_DIR/admin-token"
    RUSHES_ADMIN_TOKEN="$(cat "$STATE_DIR/admin-token")"
    export RUSHES_ADMIN_TOKEN
fi

say "building (release)"
cargo build --release --bins -p rushes-control -p rushes-worker -p rushes-scheduler
BIN="$CARGO_TARGET_DIR/release"

say "migrating"
"$BIN/rushes-control" migrate

trap 'trap - INT TERM EXIT; say "stopping"; kill $(jobs -p) 2>/dev/null; wait' INT TERM EXIT
RUSHES_METRICS_ADDR=127.0.0.1:9102 "$BIN/rushes-scheduler" >>"$STATE_DIR/logs/scheduler.log" 2>&1 &
RUSHES_METRICS_ADDR=127.0.0.1:9101 "$BIN/rushes-worker" >>"$STATE_DIR/logs/worker.log" 2>&1 &
"$BIN/rushes-control" serve >>"$STATE_DIR/logs/control.log" 2>&1 &

for _ in $(seq 1 60); do
    curl -fsS "http://$RUSHES_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
cat <<MSG

  Rushes is up.
    API          http://$RUSHES_HTTP_ADDR/api/v1/   (OpenAPI: http://$RUSHES_HTTP_ADDR/openapi.json)
    admin token  $RUSHES_ADMIN_TOKEN
    metrics      control http://$RUSHES_HTTP_ADDR/metrics, worker http://127.0.0.1:9101/metrics, scheduler http://127.0.0.1:9102/metrics
    logs         $STATE_DIR/logs/

  Try:  curl -H "Authorization: Bearer $RUSHES_ADMIN_TOKEN" -H 'Content-Type: application/json' \\
          -d '{"kind":"sleep","payload":{"seconds":2}}' http://$RUSHES_HTTP_ADDR/api/v1/jobs

  Ctrl-C stops everything.
MSG
wait
