#!/usr/bin/env bash
# Install Debian's Chromium (plus a colour emoji font for readable screenshots) for tests/test_browser_e2e.py; idempotent.
set -euo pipefail
PACKAGES=(chromium fonts-noto-color-emoji)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "already installed: $(/usr/bin/chromium --version 2>/dev/null)"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get -o DPkg::Lock::Timeout=300 update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends "${missing[@]}"
/usr/bin/chromium --version
