#!/usr/bin/env bash
# The HTTP contract, fuzzed: Schemathesis (PyPI, pinned) against the command
# API's and the query API's /openapi.json, every check, every phase (examples,
# coverage, fuzzing, stateful), a fixed seed and a bounded number of examples.
# Any failure of any kind fails the run. Needs DATABASE_URL (run it under
# deploy/local/with-pg.sh) and the debug binaries (`cargo build --bins`).
#
#   bash deploy/local/with-pg.sh bash deploy/ci/contract.sh
#
# CONTRACT_EXAMPLES (default 25) sets the examples per operation and phase.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/target/deploy-tools"
log() { echo "contract: $*" >&2; }
: "${DATABASE_URL:?run under deploy/local/with-pg.sh}"

venv="$tools/schemathesis-4.32.5"
if [[ ! -x "$venv/bin/schemathesis" ]]; then
  log "installing schemathesis 4.32.5 (PyPI)"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q schemathesis==4.32.5 >&2
fi
for bin in mileage-command-api mileage-query-api mint-token; do
  [[ -x "$root/target/debug/$bin" ]] || { log "target/debug/$bin is not built (cargo build --bins)"; exit 1; }
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
work=$(mktemp -d /tmp/mileage-contract.XXXXXX)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

export JWT_HS256_SECRET=contract-jwt-secret-of-at-least-32-bytes
export PHONE_INDEX_SECRET=contract-phone-index-secret
# Thousands of requests from one address with one token: the limits have
# their own tests.
export RATE_LIMIT_JOINS_PER_MINUTE=0 RATE_LIMIT_COMMANDS_PER_SECOND=0 RATE_LIMIT_AUTH_FAILURES_PER_MINUTE=0
export RUST_LOG=error
# Reads given a position wait for it at most this long (positions made up
# by the fuzzer are never reached).
export QUERY_WAIT_MS=100
command_port=$(free_port)
query_port=$(free_port)
COMMAND_API_ADDR=127.0.0.1:$command_port "$root/target/debug/mileage-command-api" 2>"$work/command-api.log" & pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$command_port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
QUERY_API_ADDR=127.0.0.1:$query_port "$root/target/debug/mileage-query-api" 2>"$work/query-api.log" & pids+=($!)
for _ in $(seq 1 300); do
  curl -fsS "http://127.0.0.1:$query_port/ready" >/dev/null 2>&1 && break
  sleep 0.1
done
token=$("$root/target/debug/mint-token" manager contract 3600)

status=0
# Schemathesis keeps its state in the current directory: the throwaway one.
cd "$work"
for service in "command-api:$command_port" "query-api:$query_port"; do
  name=${service%%:*}
  port=${service##*:}
  log "$name: schemathesis, all checks, all phases, seed 1"
  if ! "$venv/bin/schemathesis" --config-file "$here/schemathesis.toml" run \
      "http://127.0.0.1:$port/openapi.json" \
      --checks all --seed 1 --max-examples "${CONTRACT_EXAMPLES:-25}" \
      --header "Authorization: Bearer $token" \
      --no-color >"$work/$name.txt" 2>&1; then
    status=1
    cat "$work/$name.txt" >&2
    log "$name: FAILED (service log below)"
    tail -n 20 "$work/$name.log" >&2 || true
  else
    sed -n '/SUMMARY/,$p' "$work/$name.txt" >&2
    log "$name: 0 failures"
  fi
done
exit "$status"
