#!/usr/bin/env bash
# Installs the Debian packages klp-harness needs on the host, if missing.
# As root on Debian bookworm: apt-get update, then install. Otherwise: print
# the exact command and stop. Also installs the npm dependencies and builds.
set -euo pipefail

PACKAGES=(
  linux-source-6.1
  build-essential flex bison bc libelf-dev libssl-dev cpio xz-utils rsync patch kmod
  gcc-powerpc64le-linux-gnu libc6-dev-ppc64el-cross
  qemu-system-x86 qemu-system-ppc
  dpkg-dev apt tmux patchelf
  python3
  chromium
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  if [[ $(id -u) -ne 0 ]]; then
    echo "klp-harness: these host packages are missing: ${missing[*]}" >&2
    echo "Install them as root with:" >&2
    echo "  apt-get update && apt-get install -y --no-install-recommends ${missing[*]}" >&2
    exit 3
  fi
  echo "klp-harness: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  # A flaky mirror index (seen: the security suite) makes update exit 100 while
  # the rest works; the install below still fails loudly if a package is missing.
  apt-get update -q || echo "klp-harness: apt-get update reported errors (see above); trying the install" >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "klp-harness: host packages present" >&2
fi

node_major=$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)
if ((node_major < 20)); then
  echo "klp-harness: Node.js 20 or newer is needed (found: $(node --version 2>/dev/null || echo none))" >&2
  exit 3
fi

cd "$(dirname "$0")/.."
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  npm ci --no-audit --no-fund
fi
npm run --silent build
