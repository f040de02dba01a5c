#!/usr/bin/env bash
# The whole system's end-to-end tests (the `e2e` crate: command API,
# projector, query API, replay, gateway, chaos) on a real EventStoreDB.
#
#   EVENTSTOREDB_URL='esdb://127.0.0.1:2113?tls=false' bash deploy/ci/e2e-eventstoredb.sh
#
# Each test gets its own namespace on the server (its streams prefixed with
# the name of its throwaway PostgreSQL database), so tests share one server
# without seeing each other's events. The few tests that reach under the
# store into PostgreSQL's `events` table are listed as ignored, with why.
#
# Without EVENTSTOREDB_URL (no server can run on these machines) nothing
# runs: every end-to-end test is listed as skipped on EventStoreDB, by name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
if [[ -z "${EVENTSTOREDB_URL:-}" ]]; then
  echo "end-to-end suite on EventStoreDB: skipped, EVENTSTOREDB_URL is not set"
  cargo test -q -p mileage-e2e --tests -- --list --format terse 2>/dev/null |
    sed -n 's/: test$//p' |
    sed 's/^/  skipped on EventStoreDB (EVENTSTOREDB_URL is not set): /'
  exit 0
fi
exec bash "$here/../local/with-pg.sh" cargo test -p mileage-e2e --no-fail-fast "$@"
