#!/usr/bin/env bash
# Runs the event store benchmark against a throwaway PostgreSQL (default
# PostgreSQL settings).
#
#   bash deploy/local/bench.sh
#   BENCH_SECONDS=10 BENCH_RUNS=5 bash deploy/local/bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cd "$here/../.."
exec bash "$here/with-pg.sh" cargo bench -p mileage-store --bench event_store
