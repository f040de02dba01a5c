#!/usr/bin/env bash
# Runs the whole system locally: a throwaway PostgreSQL (the event store and
# read models), the command API, the projector, the query API, an nginx
# gateway in front of them on one port, routed as the source document does,
# and Prometheus scraping the three services with Mileage's alert rules.
# Ctrl-C stops everything and deletes the database.
#
#   bash deploy/local/run.sh
#
# Ports: GATEWAY_PORT (default 8080), COMMAND_API_ADDR (127.0.0.1:8081),
# QUERY_API_ADDR (127.0.0.1:8084), PROJECTOR_ADDR (127.0.0.1:8085),
# SMS_GATEWAY_ADDR (127.0.0.1:8086), PROMETHEUS_ADDR (127.0.0.1:9090).
# Dormant notices go to the local SMS gateway (`sms-gateway`: refuses
# numbers that are not mobile numbers, lists what it received at /sms)
# unless NOTIFIER_URL names a real gateway's webhook.
#
# Once everything answers, it writes MILEAGE_ENV (default
# target/mileage-run.env): the exports the README's "Try it" sources (the
# gateway's URL, a manager token, the binaries on PATH, the database for
# `replay`). MILEAGE_BIN_DIR names a folder of binaries already built (the
# tests' target/debug) instead of building the release ones.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
cd "$root"

if [[ -n ${MILEAGE_BIN_DIR:-} ]]; then
  bin=$(cd "$MILEAGE_BIN_DIR" && pwd)
else
  echo "building (release)..." >&2
  cargo build --release --bins -q
  bin=$root/target/release
fi
env_file=${MILEAGE_ENV:-$root/target/mileage-run.env}
bash "$here/gateway.sh" install
bash "$here/prometheus.sh" install
if ! command -v jq >/dev/null; then
  echo "installing jq (the README's requests read answers with it)" >&2
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq >/dev/null
  fi
fi

pg_dir=$(mktemp -d /tmp/mileage-run-pg.XXXXXX)
# Not inside pg_dir: that belongs to the cluster's owner with mode 700, and
# nginx's workers buffer large bodies in the gateway's folder.
gateway_dir=$(mktemp -d /tmp/mileage-run-gateway.XXXXXX)
pids=()
cleanup() {
  trap - EXIT INT TERM
  rm -f "$env_file"
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  "$here/pg.sh" stop "$pg_dir"
  rm -rf "$gateway_dir"
  echo "stopped" >&2
}
trap cleanup EXIT INT TERM

# Waits until URL answers 2xx (30 s at most), or stops everything.
await() {
  local what=$1 url=$2
  for _ in $(seq 1 300); do
    if curl -fsS -o /dev/null "$url" 2>/dev/null; then return; fi
    sleep 0.1
  done
  echo "run.sh: $what did not answer at $url" >&2
  exit 1
}

DATABASE_URL=$("$here/pg.sh" start "$pg_dir")
export DATABASE_URL
export COMMAND_API_ADDR=${COMMAND_API_ADDR:-127.0.0.1:8081}
export QUERY_API_ADDR=${QUERY_API_ADDR:-127.0.0.1:8084}
export PROJECTOR_ADDR=${PROJECTOR_ADDR:-127.0.0.1:8085}
GATEWAY_PORT=${GATEWAY_PORT:-8080}
gateway=http://127.0.0.1:$GATEWAY_PORT
# The admin page sends commands to the command API: through the gateway when
# opened there (same origin), directly when opened on the query API's port.
export COMMAND_API_URL=${COMMAND_API_URL:-$gateway}
export CORS_ALLOWED_ORIGINS=${CORS_ALLOWED_ORIGINS:-http://$QUERY_API_ADDR}
export RUST_LOG=${RUST_LOG:-info}
# Keys the phone-number uniqueness index; it must live as long as the log,
# which here is as long as this run.
export JWT_HS256_SECRET=${JWT_HS256_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
export PHONE_INDEX_SECRET=${PHONE_INDEX_SECRET:-$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')}
# Rate limits key on the client address the gateway writes in X-Real-IP.
export TRUSTED_CLIENT_IP_HEADER=${TRUSTED_CLIENT_IP_HEADER:-X-Real-IP}

"$bin/mileage-command-api" & pids+=($!)
# The command API applies the event store's migrations; wait until it is ready.
await "the command API" "http://$COMMAND_API_ADDR/ready"
MANAGER_TOKEN=$("$bin/mint-token" manager ops)
if [[ -z ${NOTIFIER_URL:-} ]]; then
  export SMS_GATEWAY_ADDR=${SMS_GATEWAY_ADDR:-127.0.0.1:8086}
  "$bin/sms-gateway" & pids+=($!)
  export NOTIFIER_URL=http://$SMS_GATEWAY_ADDR/sms
  await "the local SMS gateway" "http://$SMS_GATEWAY_ADDR/health"
fi
"$bin/mileage-projector" & pids+=($!)
"$bin/mileage-query-api" & pids+=($!)
bash "$here/gateway.sh" render "$gateway_dir" "$GATEWAY_PORT" "$COMMAND_API_ADDR" "$QUERY_API_ADDR"
bash "$here/gateway.sh" start "$gateway_dir" & pids+=($!)
PROMETHEUS_ADDR=${PROMETHEUS_ADDR:-127.0.0.1:9090}
bash "$here/prometheus.sh" render "$pg_dir/prometheus" "$COMMAND_API_ADDR" "$QUERY_API_ADDR" "$PROJECTOR_ADDR"
bash "$here/prometheus.sh" start "$pg_dir/prometheus" "$PROMETHEUS_ADDR" & pids+=($!)
await "the projector" "http://$PROJECTOR_ADDR/ready"
await "the query API" "http://$QUERY_API_ADDR/ready"
await "the gateway" "$gateway/health"
# Every consumer has taken its lock and caught up with the (empty) log.
for _ in $(seq 1 300); do
  if curl -fsS "http://$PROJECTOR_ADDR/status" 2>/dev/null \
      | jq -e 'length >= 7 and all(.[]; .state == "running")' >/dev/null; then
    break
  fi
  sleep 0.1
done
alerts_page=$(bash "$here/prometheus.sh" alerts-page "$PROMETHEUS_ADDR")

mkdir -p "$(dirname "$env_file")"
cat >"$env_file" <<ENV
# Written by deploy/local/run.sh for this run; deleted when it stops.
export MILEAGE=$gateway
export TOKEN=$MANAGER_TOKEN
export JWT_HS256_SECRET=$JWT_HS256_SECRET
export DATABASE_URL=$DATABASE_URL
export NOTIFIER_URL=$NOTIFIER_URL
export PROMETHEUS=http://$PROMETHEUS_ADDR
export PATH=$bin:\$PATH
ENV

cat <<MSG

Mileage is running behind the gateway at $gateway:
  commands   $gateway/members, $gateway/dormantMembers            (command API, http://$COMMAND_API_ADDR)
  reads      $gateway/managerpages, $gateway/managerMessages/{id} (query API, http://$QUERY_API_ADDR)
  admin page $gateway/admin   (paste the manager token below)
  projector  http://$PROJECTOR_ADDR   (/status, /metrics)
  notices    $NOTIFIER_URL   (GET it to see what the local SMS gateway received)
  event store and read models (PostgreSQL)  $DATABASE_URL
  Prometheus http://$PROMETHEUS_ADDR   (alerts: $alerts_page; try mileage:projector_lag_seconds:max,
             sum by (outcome) (rate(notices_total[5m])), mileage:http_5xx:ratio5m, release_breaker_state)

In another terminal, from $root:
  source ${env_file#"$root"/}   # \$MILEAGE, \$TOKEN (a manager's, 12 h), mint-token and replay on PATH, DATABASE_URL
then follow "Try it" in README.md. Ctrl-C here stops everything.
MSG
wait -n "${pids[@]}" || true
