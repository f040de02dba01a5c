#!/usr/bin/env bash
# Runs a command with DATABASE_URL pointing at a throwaway PostgreSQL that is
# started before and deleted after (also on Ctrl-C). Exits with the command's
# status.
#
#   bash deploy/local/with-pg.sh cargo test --workspace
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

pg_dir=$(mktemp -d /tmp/mileage-pg.XXXXXX)
cleanup() { "$here/pg.sh" stop "$pg_dir"; }
trap cleanup EXIT INT TERM
DATABASE_URL=$("$here/pg.sh" start "$pg_dir")
export DATABASE_URL
echo "throwaway PostgreSQL: $DATABASE_URL" >&2
"$@"
