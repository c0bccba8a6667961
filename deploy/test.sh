#!/usr/bin/env bash
# Runs the whole test suite against real PostgreSQL and RabbitMQ: the same bootstrap
# as deploy/up.sh, then formatting, lints and every test. Idempotent.

source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$RUSHES_ROOT"

say "checking formatting"
cargo fmt --all --check
say "linting"
cargo clippy --workspace --all-targets --locked -- -D warnings
say "checking the Prometheus config and alert rules (promtool)"
promtool check config --syntax-only deploy/prometheus/prometheus.yml >/dev/null
promtool check rules deploy/prometheus/alerts.yml >/dev/null
(cd deploy/prometheus && promtool test rules alerts.test.yml)
say "checking the deployment files (kustomize, kubernetes-validate, KEDA, systemd)"
deploy/check-deploy.sh
say "testing"
cargo test --workspace --locked -- --test-threads "${RUSHES_TEST_THREADS:-4}"
say "all tests passed"
