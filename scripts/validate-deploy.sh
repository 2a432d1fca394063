#!/usr/bin/env bash
# Lints every YAML manifest and validates the Kubernetes objects under deploy/ against the
# Kubernetes schemas (PyPI yamllint and kubernetes-validate, installed into .tools/deploy-venv
# on first use). Dapr Components are CRDs without a bundled schema; tests/deploy.rs checks
# them against the daemon instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
venv=.tools/deploy-venv
if [[ ! -x "$venv/bin/kubernetes-validate" || ! -x "$venv/bin/yamllint" ]]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check yamllint==1.38.0 kubernetes-validate==1.37.0
fi
"$venv/bin/yamllint" -d '{extends: default, rules: {line-length: {max: 200}, document-start: disable, comments: {min-spaces-from-content: 1}}}' deploy metadata.yaml
mapfile -t k8s < <(grep -lE '^kind: (Deployment|Secret|Service|ConfigMap)' -r deploy --include='*.yaml')
"$venv/bin/kubernetes-validate" --strict "${k8s[@]}"
echo "validated: yamllint on deploy/ and metadata.yaml; kubernetes-validate on ${#k8s[@]} objects"
