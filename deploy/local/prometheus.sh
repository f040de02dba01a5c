#!/usr/bin/env bash
# Debian's Prometheus for the local stack, with Mileage's rules.
#
#   bash deploy/local/prometheus.sh install
#   bash deploy/local/prometheus.sh render DIR COMMAND_API_ADDR QUERY_API_ADDR PROJECTOR_ADDR
#   bash deploy/local/prometheus.sh start DIR LISTEN_ADDR      # runs in the foreground
#   bash deploy/local/prometheus.sh alerts-page LISTEN_ADDR    # prints the alerts page's URL
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
case ${1:-} in
  install)
    if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
      echo "installing Prometheus (Debian's prometheus package)" >&2
      if [[ $(id -u) -eq 0 ]]; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null
      else
        sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null
      fi
    fi
    ;;
  render)
    dir=$2
    mkdir -p "$dir/data"
    sed -e "s|@RULES@|$root/deploy/observability/rules.yml|" \
        -e "s|@COMMAND_API_ADDR@|$3|" -e "s|@QUERY_API_ADDR@|$4|" -e "s|@PROJECTOR_ADDR@|$5|" \
        "$root/deploy/observability/prometheus.yml.template" >"$dir/prometheus.yml"
    promtool check config "$dir/prometheus.yml" >&2
    ;;
  start)
    dir=$2
    exec prometheus --config.file="$dir/prometheus.yml" --storage.tsdb.path="$dir/data" \
      --web.listen-address="$3" --log.level=warn
    ;;
  alerts-page)
    # Once Prometheus is ready: `/alerts` on upstream builds; Debian's
    # package ships without the new web UI, so there it is `/classic/alerts`
    # (and `/alerts` answers 404). The API answers on both.
    addr=$2
    for _ in $(seq 1 300); do
      if curl -fsS -o /dev/null "http://$addr/-/ready" 2>/dev/null; then break; fi
      sleep 0.1
    done
    for path in /alerts /classic/alerts; do
      if curl -fsS -o /dev/null "http://$addr$path" 2>/dev/null; then echo "http://$addr$path"; exit 0; fi
    done
    echo "http://$addr/api/v1/alerts"
    ;;
  *)
    echo "usage: $0 install | render DIR CMD_ADDR QUERY_ADDR PROJECTOR_ADDR | start DIR ADDR | alerts-page ADDR" >&2
    exit 2
    ;;
esac
