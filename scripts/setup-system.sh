#!/usr/bin/env bash
# Install the system packages rock-env's sandboxes need (idempotent):
#   bubblewrap (namespace runtime), docker.io (docker runtime), debootstrap (base image builder).
# With --test also what the test suite needs: chromium (the web console's browser tests).
# As root with apt it installs what is missing; otherwise it only reports what is missing.
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
if [ "${1:-}" = "--test" ]; then
    command -v chromium >/dev/null 2>&1 || missing+=(chromium)
fi
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "setup-system: missing system packages: ${missing[*]}; install them (Debian: apt-get install ${missing[*]})." >&2
    exit 1
fi
echo "setup-system: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q >/dev/null
apt-get install -y -q "${missing[@]}" >/dev/null
