#!/usr/bin/env bash
# Run one audit through the REST API only: upload both folders as archives, POST the audit, poll it to the
# end, download the CSV. Usage: scripts/http_audit.sh REAL_DIR GENERATED_DIR OUT.csv [CONFIG_JSON]
# Env: API (default http://127.0.0.1:8000), SYNTHAUDIT_API_KEY (sent as a bearer token when set),
#      REFERENCE (a folder of real images known not to be used: uploaded as a reference dataset),
#      METRICS (also write the metrics JSON there: the CLI's --metrics document plus audit_id).
set -euo pipefail
real=${1:?usage: http_audit.sh REAL_DIR GENERATED_DIR OUT.csv [CONFIG_JSON]}
generated=${2:?usage: http_audit.sh REAL_DIR GENERATED_DIR OUT.csv [CONFIG_JSON]}
out=${3:?usage: http_audit.sh REAL_DIR GENERATED_DIR OUT.csv [CONFIG_JSON]}
config=${4:-"{}"}
api=${API:-http://127.0.0.1:8000}
auth=()
[ -n "${SYNTHAUDIT_API_KEY:-}" ] && auth=(-H "Authorization: Bearer $SYNTHAUDIT_API_KEY")
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

json_field() { python3 -c "import json,sys; print(json.load(sys.stdin)[\"$1\"])"; }

upload() {  # role folder -> dataset id
    tar -czf "$tmp/$1.tar.gz" -C "$2" .
    curl -sf "${auth[@]}" -F "role=$1" -F "files=@$tmp/$1.tar.gz" "$api/v1/datasets" | json_field id
}

real_id=$(upload real "$real")
generated_id=$(upload generated "$generated")
reference=""
if [ -n "${REFERENCE:-}" ]; then
    reference=", \"reference_dataset_id\": \"$(upload reference "$REFERENCE")\""
fi
audit=$(curl -sf "${auth[@]}" -X POST "$api/v1/audits" -H 'Content-Type: application/json' \
    -d "{\"real_dataset_id\": \"$real_id\", \"generated_dataset_id\": \"$generated_id\"$reference, \"config\": $config}" \
    | json_field id)
echo "audit $audit" >&2
while true; do
    state=$(curl -sf "${auth[@]}" "$api/v1/audits/$audit")
    status=$(echo "$state" | json_field status)
    echo "  $status $(echo "$state" | json_field stage) $(echo "$state" | json_field progress)%" >&2
    case $status in
        succeeded) break ;;
        failed|cancelled) echo "$state" >&2; exit 1 ;;
    esac
    sleep 2
done
curl -sf "${auth[@]}" "$api/v1/audits/$audit/results.csv" -o "$out"
echo "wrote $out ($(($(wc -l <"$out") - 1)) rows)" >&2
if [ -n "${METRICS:-}" ]; then
    curl -sf "${auth[@]}" "$api/v1/audits/$audit/metrics" -o "$METRICS"
    echo "wrote $METRICS" >&2
fi
