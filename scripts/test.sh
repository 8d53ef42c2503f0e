#!/usr/bin/env bash
# The whole test suite: installs and starts (idempotently) the real storage servers on
# 127.0.0.1, runs every test against them, and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."

export OUTLAST_TEST_DIR=${OUTLAST_TEST_DIR:-$(mktemp -d /tmp/outlast-test.XXXXXX)}
cleanup() { scripts/servers.sh stop || true; }
trap cleanup EXIT

scripts/servers.sh start >/dev/null
export OUTLAST_TEST_PROVIDERS="$OUTLAST_TEST_DIR/providers.toml"
export OUTLAST_SERVERS_SCRIPT="$PWD/scripts/servers.sh"

# Everything that does not stop servers, in parallel.
cargo test --workspace --no-fail-fast
# Tests that stop and restart servers run alone, so they cannot disturb the others.
cargo test --workspace --test servers -- --ignored --test-threads=1
