#!/usr/bin/env bash
# Runs every test of the workspace against a throwaway PostgreSQL that this
# script starts and stops. Extra arguments go to `cargo test`.
#
#   bash deploy/local/test.sh                 # everything
#   bash deploy/local/test.sh -p mileage-store
#
# Installs headless Chromium for the admin page's browser test when missing.
# A full run (no arguments) also fuzzes both services' OpenAPI contract
# (deploy/ci/contract.sh, Schemathesis from PyPI).
# With EVENTSTOREDB_URL set, the EventStoreDB conformance tests run and the
# end-to-end tests run on that server; otherwise the conformance tests are
# listed as ignored, with the reason, and the end-to-end tests as skipped on
# EventStoreDB (deploy/ci/e2e-eventstoredb.sh).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
full=0
if [[ $# -eq 0 ]]; then
  full=1
  set -- --workspace
  # The deployment files (Kubernetes, gateway, compose, Dockerfile), checked
  # offline with the tools that install here.
  bash "$here/../ci/validate.sh"
  # Docs where they say something (modules and public items).
  bash "$here/../ci/docs.sh"
fi
# The admin page's browser test drives Debian's headless Chromium; the
# zero-downtime test runs Debian's nginx as the gateway.
bash "$here/chromium.sh"
bash "$here/gateway.sh" install
# Every binary, for the tests that run them as processes (`cargo test`
# builds a package's binaries only when that package has integration tests
# of its own; `replay` and `sms-gateway` have none).
cargo build --workspace --bins
log=$(mktemp /tmp/mileage-test.XXXXXX.log)
set +e
bash "$here/with-pg.sh" cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# The HTTP contract, fuzzed (Schemathesis against both services' OpenAPI
# documents, the binaries the tests just built), on its own throwaway server.
if [[ $full -eq 1 ]]; then
  bash "$here/with-pg.sh" bash "$here/../ci/contract.sh" || status=1
fi
# The end-to-end suite on EventStoreDB: the run above was it when
# EVENTSTOREDB_URL is set; otherwise its tests are listed as skipped there.
if [[ $full -eq 1 && -z "${EVENTSTOREDB_URL:-}" ]]; then
  bash "$here/../ci/e2e-eventstoredb.sh" || status=1
fi
# One closing line for the whole run (cargo prints one per test binary).
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($i ~ /^passed;?/) p += $(i-1); if ($i ~ /^failed;?/) f += $(i-1); if ($i ~ /^ignored;?/) s += $(i-1) } }
     END { printf "total: %d passed, %d failed, %d skipped\n", p, f, s }' "$log"
rm -f "$log"
exit "$status"
