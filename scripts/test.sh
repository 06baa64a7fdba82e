#!/usr/bin/env bash
# Runs Beckon's whole test suite: formatting, lints, and every test of every crate, the browser
# tests in headless Chromium and the PostgreSQL backend's against a running server included. Installs what the tests need when it is missing (Debian's
# chromium, chromium-driver and redis-server; schemathesis, standardwebhooks, aiosmtpd and gbstats with the
# numpy, pandas and scipy it runs on, from PyPI), so it works on a fresh machine.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
# node runs the isbot patterns as the original JavaScript, for beckon-bots' test against it.
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "== installing ${need_apt[*]}"
  sudo_cmd=()
  [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
  "${sudo_cmd[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# Schemathesis, the property-based API tester, in a virtual environment of its own (kept
# between runs), so that nothing is installed into the system's Python.
tools="${BECKON_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/beckon-test-tools}"
if [ ! -x "$tools/venv/bin/schemathesis" ]; then
  echo "== installing schemathesis into $tools/venv"
  if ! python3 -m venv --help >/dev/null 2>&1; then
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq python3-venv >/dev/null
  fi
  python3 -m venv "$tools/venv"
  "$tools/venv/bin/pip" install -q "schemathesis>=4.3,<5"
fi
export BECKON_SCHEMATHESIS="$tools/venv/bin/schemathesis"
# The reference peers: the Standard Webhooks library of another language verifies every
# signature the outbox makes, aiosmtpd is the SMTP server the e-mail tests send to, and
# GrowthBook's statistics engine gbstats is what beckon-stats' numbers are checked against (0.8.0
# requires numpy, pandas and scipy below 2; the bounds are named so pip need not backtrack).
# The crawler-user-agents list is what beckon-bots' recall is measured on.
if ! "$tools/venv/bin/python" -c "import standardwebhooks, aiosmtpd, gbstats, crawleruseragents" >/dev/null 2>&1; then
  echo "== installing standardwebhooks, aiosmtpd, gbstats and crawler-user-agents into $tools/venv"
  "$tools/venv/bin/pip" install -q "standardwebhooks==1.1.0" "aiosmtpd==1.4.6" \
    "gbstats==0.8.0" "numpy<2" "pandas<2" "scipy<2" "crawler-user-agents==1.67.0" "pyyaml>=6"
fi
export BECKON_PYTHON="$tools/venv/bin/python"

# PostgreSQL: the scale-out backend's tests and the cluster's run against a real server, each
# in a schema of its own (CI's is at 127.0.0.1:5432 with trust auth and a database `test`;
# BECKON_TEST_POSTGRES names another). Checked first, so that its absence is named, not found
# by a test halfway through.
export BECKON_TEST_POSTGRES="${BECKON_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/test}"
if ! python3 - "$BECKON_TEST_POSTGRES" <<'PY'
import socket, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
socket.create_connection((url.hostname or "127.0.0.1", url.port or 5432), timeout=3).close()
PY
then
  echo "error: no PostgreSQL at $BECKON_TEST_POSTGRES; start one (trust auth, a database for the" >&2
  echo "tests) or set BECKON_TEST_POSTGRES to one's URL" >&2
  exit 1
fi

# Redis: the bus between a cluster's nodes, in its tests and the cluster's. CI's runs at
# 127.0.0.1:6379 (BECKON_TEST_REDIS names another); where none answers, a private one is started
# for this run (Debian's redis-server, installed when missing) and stopped at the end.
export BECKON_TEST_REDIS="${BECKON_TEST_REDIS:-redis://127.0.0.1:6379}"
redis_answers() {
  python3 - "$1" <<'PY'
import socket, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
s = socket.create_connection((url.hostname or "127.0.0.1", url.port or 6379), timeout=3)
s.sendall(b"PING\r\n")
sys.exit(0 if s.recv(16).startswith(b"+PONG") else 1)
PY
}
if ! redis_answers "$BECKON_TEST_REDIS" 2>/dev/null; then
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "== installing redis-server"
    sudo_cmd=()
    [ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq redis-server >/dev/null
  fi
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  echo "== no Redis at $BECKON_TEST_REDIS: starting one for this run on port $port"
  redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
  redis_pid=$!
  trap 'kill "$redis_pid" 2>/dev/null || true' EXIT
  export BECKON_TEST_REDIS="redis://127.0.0.1:$port"
  for _ in $(seq 50); do redis_answers "$BECKON_TEST_REDIS" 2>/dev/null && break; sleep 0.1; done
  redis_answers "$BECKON_TEST_REDIS" || { echo "error: the Redis started for the tests does not answer" >&2; exit 1; }
fi

echo "== formatting"
cargo fmt --all -- --check

echo "== widget size"
./widget/size.sh

echo "== lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

echo "== tests"
cargo test --workspace --locked
