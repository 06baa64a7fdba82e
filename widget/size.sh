#!/usr/bin/env sh
# Prints each script's raw and gzipped size and fails when one is over its budget.
# The budget is measured the way the file travels: gzip at its best level (-9), in bytes.
# widget.js is loaded on every page of every site; chat.js only when a chat opens.
set -eu
cd "$(dirname "$0")"
fail=0
check() {
  file=$1 budget=$2
  raw=$(wc -c < "$file" | tr -d ' ')
  gz=$(gzip -9 -c "$file" | wc -c | tr -d ' ')
  gz6=$(gzip -6 -c "$file" | wc -c | tr -d ' ')
  echo "$file: ${raw} bytes raw, ${gz} bytes gzipped (-9; ${gz6} at -6), budget ${budget}, headroom $((budget - gz))"
  if command -v node >/dev/null 2>&1; then
    node --check "$file" # a syntax error is the one failure no try/catch can hide from the host page
  fi
  if [ "$gz" -gt "$budget" ]; then
    echo "$file is over its budget by $((gz - budget)) bytes gzipped" >&2
    fail=1
  fi
}
check widget.js 12288 # 12 KiB
check chat.js 16384   # 16 KiB
exit $fail
