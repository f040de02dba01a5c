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
  # The e2e test executables of the workspace build the suite just ran
  # (`-p mileage-e2e` alone would unify features differently and build the
  # whole tree a second time, doubling the disk a CI run takes).
  cargo test -q --workspace --tests --no-run --message-format=json 2>/dev/null |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and "#mileage-e2e@" in m["package_id"]:
        print(m["executable"])' |
    while read -r exe; do "$exe" --list --format terse; done |
    sed -n 's/: test$//p' |
    sed 's/^/  skipped on EventStoreDB (EVENTSTOREDB_URL is not set): /'
  exit 0
fi
exec bash "$here/../local/with-pg.sh" cargo test -p mileage-e2e --no-fail-fast "$@"
