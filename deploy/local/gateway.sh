#!/usr/bin/env bash
# nginx (Debian's package) as Mileage's gateway, from deploy/gateway/gateway.conf.template.
#
#   deploy/local/gateway.sh install                 apt-get install nginx when missing
#   deploy/local/gateway.sh render DIR PORT CMDS QS  write DIR/nginx.conf: listen on 127.0.0.1:PORT,
#                                                   CMDS and QS are space-separated host:port lists
#                                                   of command-API and query-API instances
#   deploy/local/gateway.sh start DIR               run nginx on DIR/nginx.conf in the foreground
#   deploy/local/gateway.sh test DIR                nginx -t on DIR/nginx.conf
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
template="$here/../gateway/gateway.conf.template"

log() { echo "gateway.sh: $*" >&2; }

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

install() {
  if [[ -x "$(nginx_bin)" ]]; then return; fi
  log "installing nginx with apt"
  if [[ $(id -u) -ne 0 ]]; then log "need root to apt-get install nginx"; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  # Keep the package from starting a system nginx on port 80.
  local policy=/usr/sbin/policy-rc.d created=""
  if [[ ! -e $policy ]]; then printf '#!/bin/sh\nexit 101\n' >"$policy"; chmod +x "$policy"; created=1; fi
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends nginx >&2
  if [[ -n $created ]]; then rm -f "$policy"; fi
}

servers() {
  local out="" s
  for s in $1; do out+="server $s max_fails=0; "; done
  echo "$out"
}

# nginx started as root runs its workers as this user; they buffer large
# bodies and answers in DIR/tmp, so it must be theirs and reachable.
worker_user=nobody

# Makes DIR/tmp writable by the workers, whoever runs this: as root the
# workers are $worker_user, so DIR/tmp is theirs, and every folder above it
# must let them through (a throwaway folder of mode 700 does not).
prepare_temp() {
  local dir=$1
  mkdir -p "$dir/tmp"
  if [[ $(id -u) -ne 0 ]]; then return; fi
  chmod 755 "$dir"
  chown "$worker_user:$(id -gn "$worker_user")" "$dir/tmp"
  if ! runuser -u "$worker_user" -- test -w "$dir/tmp"; then
    log "$dir/tmp is not writable by nginx's workers ($worker_user): a folder above it is closed to them"
    exit 1
  fi
}

render() {
  local dir=$1 port=$2 commands=$3 queries=$4 user_line=""
  prepare_temp "$dir"
  if [[ $(id -u) -eq 0 ]]; then user_line="user $worker_user $(id -gn "$worker_user");"; fi
  GATEWAY_PORT="127.0.0.1:$port" \
  COMMAND_API_SERVERS=$(servers "$commands") \
  QUERY_API_SERVERS=$(servers "$queries") \
  GATEWAY_JOINS_PER_MINUTE=${GATEWAY_JOINS_PER_MINUTE:-60} \
    python3 - "$template" >"$dir/gateway.conf" <<'PY'
import os, re, sys
text = open(sys.argv[1]).read()
def value(m):
    name = m.group(1)
    if name not in os.environ:
        sys.exit(f"gateway.sh: {name} is not set")
    return os.environ[name]
sys.stdout.write(re.sub(r"\$\{([A-Z_]+)\}", value, text))
PY
  cat >"$dir/nginx.conf" <<CONF
daemon off;
$user_line
worker_processes 1;
pid $dir/nginx.pid;
error_log stderr warn;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $dir/tmp/body;
    proxy_temp_path $dir/tmp/proxy;
    fastcgi_temp_path $dir/tmp/fastcgi;
    uwsgi_temp_path $dir/tmp/uwsgi;
    scgi_temp_path $dir/tmp/scgi;
    include $dir/gateway.conf;
}
CONF
}

case "${1:-}" in
  install) install ;;
  render) shift; render "$@" ;;
  start) install; exec "$(nginx_bin)" -p "$2" -c "$2/nginx.conf" ;;
  test) install; "$(nginx_bin)" -t -q -p "$2" -c "$2/nginx.conf" ;;
  *) echo "usage: gateway.sh install | render DIR PORT CMDS QS | start DIR | test DIR" >&2; exit 2 ;;
esac
