#!/bin/sh
# `disk_free`: the space left under `path`, failing below `min_free_kb`.
set -eu

spec() {
  cat <<'JSON'
{"operators": {"disk_free": {"config_schema": {"type": "object",
  "properties": {"path": {"type": "string"}, "min_free_kb": {"type": "integer", "minimum": 0}},
  "required": ["path"], "additionalProperties": false}}}}
JSON
}

# The request is one line of compact JSON: {"config":{"path":"/tmp",...},"context":{...}}.
field() {
  printf '%s' "$request" | sed -n "s/.*\"config\":{[^}]*\"$1\":\"\{0,1\}\([^\",}]*\).*/\1/p"
}

run() {
  IFS= read -r request
  path=$(field path)
  min=$(field min_free_kb)
  free=$(df -Pk "$path" | awk 'NR == 2 { print $4 }')
  printf '{"type": "log", "level": "info", "message": "%s has %s KiB free"}\n' "$path" "$free"
  if [ -n "$min" ] && [ "$free" -lt "$min" ]; then
    echo "only $free KiB free under $path, below $min" >&2
    exit 1
  fi
  printf '{"type": "result", "value": {"path": "%s", "free_kb": %s}}\n' "$path" "$free"
}

case "${1:-}" in
  spec) spec ;;
  run) [ "${2:-}" = disk_free ] && run ;;
  *) echo "usage: $0 spec | run disk_free" >&2; exit 2 ;;
esac
