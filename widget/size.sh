#!/usr/bin/env sh
# Prints the widget's raw and gzipped size and fails when the gzipped size is over budget.
# The budget is measured the way the file travels: gzip at its best level (-9), in bytes.
set -eu
cd "$(dirname "$0")"
BUDGET=12288 # 12 KiB gzipped
raw=$(wc -c < widget.js | tr -d ' ')
gz=$(gzip -9 -c widget.js | wc -c | tr -d ' ')
gz6=$(gzip -6 -c widget.js | wc -c | tr -d ' ')
echo "widget.js: ${raw} bytes raw, ${gz} bytes gzipped (-9; ${gz6} at -6), budget ${BUDGET}, headroom $((BUDGET - gz))"
if command -v node >/dev/null 2>&1; then
  node --check widget.js # a syntax error is the one failure no try/catch can hide from the host page
fi
if [ "$gz" -gt "$BUDGET" ]; then
  echo "widget.js is over its budget by $((gz - BUDGET)) bytes gzipped" >&2
  exit 1
fi
