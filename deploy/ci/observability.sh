#!/usr/bin/env bash
# Checks the observability files offline (run by validate.sh):
#   - deploy/observability/rules.yml with `promtool check rules`, and its
#     unit tests (each alert fires and resolves on synthetic series) with
#     `promtool test rules` (Debian's `prometheus` package, apt);
#   - every metric the rules and the dashboard name is one the services
#     emit (found in the Rust sources) or a recording rule, so a renamed
#     metric cannot silently empty an alert;
#   - the dashboard: JSON, every panel with a title and targets, every
#     query parsed by promtool;
#   - Kubernetes: the PrometheusRule equals rules.yml, and each
#     ServiceMonitor selects a Service of the base with the port it names;
#   - the local Prometheus configuration (deploy/local/prometheus.sh) with
#     `promtool check config`.
#
#   bash deploy/ci/observability.sh          # check
#   bash deploy/ci/observability.sh render   # rewrite the PrometheusRule from rules.yml
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/target/deploy-tools"
obs="$root/deploy/observability"
monitoring="$root/deploy/k8s/overlays/monitoring"
log() { echo "observability: $*" >&2; }
python=python3
[[ -x "$tools/venv/bin/python" ]] && python="$tools/venv/bin/python"

if [[ ${1:-} == render ]]; then
  "$python" - "$obs/rules.yml" "$monitoring/prometheus-rule.yaml" <<'PY'
import sys, yaml
rules = yaml.safe_load(open(sys.argv[1]))
doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
       "metadata": {"name": "mileage", "labels": {"app.kubernetes.io/part-of": "mileage", "role": "alert-rules"}},
       "spec": {"groups": rules["groups"]}}
with open(sys.argv[2], "w") as f:
    f.write("# Generated from deploy/observability/rules.yml (CI checks they are equal):\n#   bash deploy/ci/observability.sh render\n")
    yaml.safe_dump(doc, f, sort_keys=False, width=100)
PY
  exit 0
fi

if ! command -v promtool >/dev/null; then
  log "installing promtool (Debian's prometheus package)"
  if [[ $(id -u) -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null
  else
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -q prometheus >/dev/null
  fi
fi

log "rules: promtool check rules, promtool test rules"
promtool check rules "$obs/rules.yml" >&2
(cd "$obs" && promtool test rules rules.test.yml >&2)

log "metric names, the dashboard, the Kubernetes resources"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
"$python" - "$root" "$scratch/queries.yml" <<'PY'
import glob, json, re, sys, yaml
root, queries_out = sys.argv[1], sys.argv[2]
failures = []

# What the services emit: the metrics macros' names, histograms' series, `up`.
emitted = {"up"}
for path in glob.glob(f"{root}/*/src/**/*.rs", recursive=True):
    text = open(path).read()
    for kind, name in re.findall(r'\b(counter|gauge|histogram)!\(\s*"([a-z_]+)"', text):
        emitted.add(name)
        if kind == "histogram":
            emitted.update({f"{name}_bucket", f"{name}_sum", f"{name}_count"})

rules = yaml.safe_load(open(f"{root}/deploy/observability/rules.yml"))
recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}

KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
            "bool", "offset", "inf", "nan",
            # aggregation operators (may be followed by `by (...)` before their parenthesis)
            "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
            "bottomk", "topk", "quantile"}
def metrics_in(expr):
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)          # strings
    expr = re.sub(r'\{[^}]*\}', '', expr)                      # label matchers
    expr = re.sub(r'\[[^\]]*\]', '', expr)                     # ranges
    expr = re.sub(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)', r'\1', expr)
    names = set()
    for m in re.finditer(r'[A-Za-z_:][A-Za-z0-9_:]*', expr):
        name = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("(") or name in KEYWORDS:
            continue
        names.add(name)
    return names

def check(where, expr):
    for name in sorted(metrics_in(expr)):
        if name not in emitted and name not in recorded:
            failures.append(f"{where}: {name} is neither emitted by a service nor recorded")

queries = []
for group in rules["groups"]:
    for rule in group["rules"]:
        check(f"rules.yml {rule.get('alert') or rule.get('record')}", rule["expr"])

dashboard = json.load(open(f"{root}/deploy/observability/dashboard.json"))
if not dashboard.get("title") or not dashboard.get("uid"):
    failures.append("dashboard.json: a title and a uid are needed")
ids = set()
for panel in dashboard.get("panels", []):
    title = panel.get("title")
    if not title or not panel.get("targets"):
        failures.append(f"dashboard.json panel {panel.get('id')}: a title and targets are needed")
    if panel.get("id") in ids:
        failures.append(f"dashboard.json panel {panel.get('id')}: the id is used twice")
    ids.add(panel.get("id"))
    for target in panel.get("targets", []):
        check(f"dashboard.json {title!r}", target["expr"])
        queries.append({"record": f"dashboard:query_{len(queries)}", "expr": target["expr"]})
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": queries}]}, open(queries_out, "w"))

# Kubernetes: the PrometheusRule is rules.yml; ServiceMonitors select real Services.
prometheus_rule = yaml.safe_load(open(f"{root}/deploy/k8s/overlays/monitoring/prometheus-rule.yaml"))
if prometheus_rule["spec"]["groups"] != rules["groups"]:
    failures.append("prometheus-rule.yaml differs from rules.yml: run `bash deploy/ci/observability.sh render`")
services = {}
for path in glob.glob(f"{root}/deploy/k8s/base/*.yaml"):
    for doc in yaml.safe_load_all(open(path)):
        if doc and doc.get("kind") == "Service":
            services[doc["metadata"]["name"]] = doc
for monitor in yaml.safe_load_all(open(f"{root}/deploy/k8s/overlays/monitoring/service-monitors.yaml")):
    name = monitor["metadata"]["name"]
    labels = monitor["spec"]["selector"]["matchLabels"]
    matching = [s for s in services.values() if all(s["metadata"].get("labels", {}).get(k) == v for k, v in labels.items())]
    if len(matching) != 1:
        failures.append(f"ServiceMonitor {name}: selects {len(matching)} Services, not one")
        continue
    ports = {p.get("name") for p in matching[0]["spec"]["ports"]}
    for endpoint in monitor["spec"]["endpoints"]:
        if endpoint["port"] not in ports:
            failures.append(f"ServiceMonitor {name}: port {endpoint['port']} is not one of {sorted(ports)}")
        jobs = [r.get("replacement") for r in endpoint.get("relabelings", []) if r.get("targetLabel") == "job"]
        if jobs != [f"mileage-{name}"]:
            failures.append(f"ServiceMonitor {name}: the job must be mileage-{name}, as the rules expect")

for failure in failures:
    print(f"observability: {failure}", file=sys.stderr)
sys.exit(1 if failures else 0)
PY
promtool check rules "$scratch/queries.yml" >/dev/null
log "the local Prometheus configuration: promtool check config"
bash "$root/deploy/local/prometheus.sh" render "$scratch/prometheus" 127.0.0.1:8081 127.0.0.1:8084 127.0.0.1:8085 2>/dev/null
log "rules, dashboard, local configuration and monitoring resources are valid"
