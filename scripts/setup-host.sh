#!/usr/bin/env bash
# Installs what felix's tests, demo and benchmarks need on a fresh Debian machine (as root):
# the kernel tools and etcd from apt when missing, then the .venv with felix installed editable.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in iptables:iptables-legacy-restore ipset:ipset etcd-server:etcd etcd-client:etcdctl \
            conntrack:conntrack iproute2:ip runit:runsv iputils-ping:ping curl:curl; do
  pkg=${pair%%:*}; bin=${pair##*:}
  command -v "$bin" >/dev/null 2>&1 || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing packages ${need[*]} and not root; install them or run as root" >&2
    exit 1
  fi
  echo "setup: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # etcd-server's package starts a system etcd on 2379; felix's tests run their own.
  if command -v systemctl >/dev/null 2>&1; then systemctl disable --now etcd >/dev/null 2>&1 || true; fi
fi

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c 'import felix, pytest, hypothesis' 2>/dev/null \
   || [ setup.py -nt .venv/.installed ]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
  if ! .venv/bin/pip install -q -e '.[test]' > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "setup: pip install failed" >&2
    exit 1
  fi
  .venv/bin/python -c 'import felix, pytest, hypothesis'
  touch .venv/.installed
fi
