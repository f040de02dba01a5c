#!/usr/bin/env bash
# Runs a benchmark against a throwaway PostgreSQL (default PostgreSQL settings).
#
#   bash deploy/local/bench.sh                      # the event store benchmark
#   BENCH_SECONDS=10 BENCH_RUNS=5 bash deploy/local/bench.sh
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

pg_dir=$(mktemp -d /tmp/mileage-bench-pg.XXXXXX)
cleanup() { "$here/pg.sh" stop "$pg_dir"; }
trap cleanup EXIT INT TERM
DATABASE_URL=$("$here/pg.sh" start "$pg_dir")
export DATABASE_URL

cd "$root"
cargo bench -p mileage-store --bench event_store
