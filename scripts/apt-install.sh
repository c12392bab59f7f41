#!/usr/bin/env bash
# Installs Debian packages, running apt-get update once first. Used by the
# Makefile on fresh machines; needs root (or passwordless sudo).
set -euo pipefail
sudo=""
if [ "$(id -u)" != 0 ]; then
	command -v sudo >/dev/null || { echo "apt-install.sh: need root to install $*" >&2; exit 1; }
	sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "$@" >/dev/null
echo "apt-install.sh: installed $*"
