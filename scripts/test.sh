#!/usr/bin/env bash
# Install everything the test suite needs, then run it. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v mosquitto >/dev/null 2>&1 || [ -x /usr/sbin/mosquitto ] || need_apt+=(mosquitto)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
# the store tests run on PostgreSQL too, in a cluster they start (tests/support/postgres.py)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need_apt+=(postgresql)
# tests/deploy run deploy/haproxy.cfg in HAProxy and check deploy/nginx.conf with `nginx -t`
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || need_apt+=(haproxy)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need_apt+=(nginx)
# benchmarks/rp2040_heap.py runs rp2040js (npm, installed into ~/.cache/picocharge by `npm ci`)
command -v node >/dev/null 2>&1 || need_apt+=(nodejs)
command -v npm >/dev/null 2>&1 || need_apt+=(npm)
if [ ${#need_apt[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null 2>&1; then
        SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
        echo "installing Debian packages: ${need_apt[*]}"
        $SUDO dpkg --configure -a >/dev/null 2>&1 || true   # finish an install cut short earlier
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get -f install -y -qq >/dev/null 2>&1 || true
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >/dev/null
    else
        echo "warning: no apt-get; install ${need_apt[*]} yourself (amqtt from PyPI stands in for mosquitto)" >&2
    fi
fi

python3 -m pip install -q -e '.[test]'
# Most tests wait on processes (firmware, gateway, broker) rather than compute: with 3 workers
# on a 2-core machine the cores were 57 % busy on average and the suite took 17 min 22 s
# (1,049 tests, 1 December); with 5 they were ~95 % busy and it took 13 min 46 s, every test
# passing. 4 keeps most of that gain with room left on the cores for the tests that time
# things. PICOCHARGE_TEST_WORKERS=0 runs it in one process (for a debugger, or -x to stop at
# the first failure in order).
workers="${PICOCHARGE_TEST_WORKERS:-4}"
if [ "$workers" != 0 ]; then
    set -- -n "$workers" "$@"
fi
exec python3 -m pytest "$@"
