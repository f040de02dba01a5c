#!/usr/bin/env bash
# Earns points from outside the process with wrk (Debian's package,
# installed with apt when missing), against a running local stack
# (`bash deploy/local/run.sh`, started with RATE_LIMIT_COMMANDS_PER_SECOND=0
# so the per-caller limit measures nothing): 32 connections, each request
# one earn for one of 32 members, with a fresh Idempotency-Key or none.
#
#   TOKEN=<the manager token run.sh printed> bash deploy/local/wrk.sh
#
# Prints requests per second and latency for: the command API directly
# without a key and with one, then through the gateway (which gives every
# command a key). Settings: WRK_SECONDS (10), GATEWAY (http://127.0.0.1:8080),
# COMMAND_API (http://127.0.0.1:8081).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${TOKEN:?set TOKEN to a manager token (run.sh prints one)}"
seconds=${WRK_SECONDS:-10}
gateway=${GATEWAY:-http://127.0.0.1:8080}
command_api=${COMMAND_API:-http://127.0.0.1:8081}
if ! command -v wrk >/dev/null; then
  echo "wrk.sh: installing wrk (apt)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2
fi
members=()
for n in $(seq 1 32); do
  phone=$(printf '0109%03d%04d' $((RANDOM % 1000)) "$n")
  id=$(curl -fsS -XPOST "$command_api/members" -H 'content-type: application/json' \
    -d "{\"phoneNo\":\"$phone\",\"nickname\":\"wrk\"}" | sed -E 's/.*"memberId":"([^"]+)".*/\1/')
  members+=("$id")
done
export WRK_MEMBERS="${members[*]}" WRK_TOKEN=$TOKEN
run() {
  local label=$1 url=$2 keyed=$3
  echo "== $label"
  WRK_KEYED=$keyed wrk -t2 -c32 -d"${seconds}s" --latency -s "$here/wrk-earn.lua" "$url" |
    grep -E 'Requests/sec|^ +(50|99)%|Non-2xx|Socket errors|status [0-9]'
}
run "command API, no key" "$command_api" 0
run "command API, fresh Idempotency-Key" "$command_api" 1
run "gateway (a key on every command)" "$gateway" 0
