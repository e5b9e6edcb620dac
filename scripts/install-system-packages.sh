#!/usr/bin/env bash
# Installs the Debian packages pcnet's tests need (CUPS, Ghostscript, bubblewrap for the spool
# analysis sandbox, the pycups build headers, the SNMP simulator, net-snmp's agent and tools for
# the SNMP benchmark; iproute2, nftables and the PostgreSQL server for the multi-host harness,
# tests/integration/hosts.py, which runs private PostgreSQL servers inside network namespaces).
# Idempotent: packages already present are skipped, so a second run is quick.
set -euo pipefail
packages=(libcups2-dev cups cups-client cups-bsd cups-ipp-utils ghostscript bubblewrap snmpsim snmp snmpd iproute2 nftables postgresql)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "pcnet: need root to apt-get install: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
