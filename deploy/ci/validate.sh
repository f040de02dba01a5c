#!/usr/bin/env bash
# Validates the deployment files offline, since nothing here can run them:
#   - Kubernetes manifests against the API schemas (kubernetes-validate, PyPI),
#     each file of the base and the overlay, and what `kubectl kustomize`
#     renders when kubectl is installed;
#   - the gateway template with `nginx -t` (Debian's nginx);
#   - the compose file against the Compose specification's JSON Schema (as
#     shipped in the docker-compose wheel on PyPI);
#   - the Dockerfile with dockerfilelint (npm);
#   - the Prometheus rules (promtool check and unit tests), the dashboard and
#     the monitoring overlay's resources (deploy/ci/observability.sh).
# Tools go to target/deploy-tools. Exits non-zero on the first failure; a
# check that cannot run says so by name.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tools="$root/target/deploy-tools"
mkdir -p "$tools"
log() { echo "validate: $*" >&2; }

# Python tools in their own venv.
if [[ ! -x "$tools/venv/bin/kubernetes-validate" ]]; then
  log "installing kubernetes-validate, jsonschema and PyYAML (PyPI)"
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q kubernetes-validate==1.31.0 jsonschema PyYAML >&2
fi
if [[ ! -f "$tools/compose_spec.json" ]]; then
  log "fetching the Compose specification schema (docker-compose wheel, PyPI)"
  "$tools/venv/bin/pip" download -q --no-deps -d "$tools/wheels" docker-compose==1.29.2 >&2
  "$tools/venv/bin/python" - "$tools" <<'PY'
import glob, sys, zipfile
tools = sys.argv[1]
wheel = glob.glob(f"{tools}/wheels/docker_compose-1.29.2-*.whl")[0]
open(f"{tools}/compose_spec.json", "wb").write(zipfile.ZipFile(wheel).read("compose/config/compose_spec.json"))
PY
fi

k8s_version=1.31.0
validate_k8s() {
  "$tools/venv/bin/kubernetes-validate" --quiet --strict -k "$k8s_version" "$@"
}

log "kubernetes manifests (schemas of Kubernetes $k8s_version)"
cd "$root/deploy/k8s"
# Complete resources; the overlay's resources.yaml is a patch and the
# CloudNativePG Cluster is a custom resource (validated as rendered below,
# where unknown kinds are reported).
validate_k8s base/config.yaml base/command-api.yaml base/query-api.yaml base/projector.yaml \
  base/ingress.yaml overlays/production/namespace.yaml overlays/production/eventstoredb.yaml
if command -v kubectl >/dev/null; then
  for dir in base overlays/production overlays/monitoring; do
    rendered="$tools/$(echo "$dir" | tr / -).yaml"
    kubectl kustomize "$dir" >"$rendered"
    # The CloudNativePG Cluster and the Prometheus Operator's resources have
    # no schema here (observability.sh checks the latter); everything else
    # must pass.
    "$tools/venv/bin/python" - "$rendered" "$rendered.core" <<'PY'
import sys, yaml
custom = {"postgresql.cnpg.io/v1", "monitoring.coreos.com/v1"}
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d and d.get("apiVersion") not in custom]
yaml.safe_dump_all(docs, open(sys.argv[2], "w"))
PY
    validate_k8s "$rendered.core"
    log "kustomize build $dir: $(grep -c '^kind:' "$rendered") resources, valid"
  done
else
  log "kustomize build: skipped, kubectl is not installed (the files were validated one by one)"
fi

log "gateway: nginx -t"
gw=$(mktemp -d)
bash "$root/deploy/local/gateway.sh" render "$gw" 18080 "127.0.0.1:18081 127.0.0.1:18082" "127.0.0.1:18084"
bash "$root/deploy/local/gateway.sh" test "$gw"
rm -rf "$gw"

log "compose file against the Compose specification"
"$tools/venv/bin/python" - "$tools/compose_spec.json" "$root/deploy/compose/compose.yaml" <<'PY'
import json, sys, yaml, jsonschema
schema = json.load(open(sys.argv[1]))
doc = yaml.safe_load(open(sys.argv[2]))
errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(doc), key=lambda e: list(e.path))
for e in errors:
    print(f"{sys.argv[2]}: {'/'.join(map(str, e.path))}: {e.message}", file=sys.stderr)
sys.exit(1 if errors else 0)
PY

log "Dockerfile: dockerfilelint"
if [[ ! -x "$tools/node/node_modules/.bin/dockerfilelint" ]]; then
  log "installing dockerfilelint (npm)"
  npm install -s --no-audit --no-fund --prefix "$tools/node" dockerfilelint@1.8.0 >&2
fi
"$tools/node/node_modules/.bin/dockerfilelint" "$root/Dockerfile"

bash "$here/observability.sh"

log "all deployment files are valid"
