#!/usr/bin/env bash
# Installs everything chainidx needs to build, test and run its quickstart on Debian 12.
# Idempotent: packages already present are skipped by apt, anvil is reinstalled only when
# the pinned version is missing. Runs as root (or with sudo available).
set -euo pipefail

ANVIL_VERSION="1.7.1"
# cast (foundry's command-line tool, same release) computes the ABI vectors the tests check against.
CAST_VERSION="1.7.1"
top="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

packages=(
  build-essential cmake ninja-build ccache pkg-config git
  libboost1.81-dev libboost-url1.81-dev libssl-dev openssl ca-certificates libpsl-dev publicsuffix
  libsimdjson-dev librdkafka-dev libpqxx-dev libspdlog-dev libfmt-dev
  libtomlplusplus-dev libcrypto++-dev prometheus-cpp-dev libcli11-dev
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  postgresql postgresql-client kcat prometheus
  curl procps python3-yaml python3-jsonschema systemd
)

sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! command -v npm >/dev/null 2>&1; then missing+=(nodejs npm); fi

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  "${sudo_cmd[@]}" apt-get update -q
  DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The Debian postgresql package starts a cluster on 5432; chainidx's tests and quickstart run
# their own clusters on free ports, so the system one is left as the package configured it.

anvil_dir="$top/.deps/anvil"
anvil_bin="$anvil_dir/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil"
if [ ! -x "$anvil_bin" ] || ! "$anvil_bin" --version 2>/dev/null | grep -q "$ANVIL_VERSION"; then
  echo "install-deps: installing anvil $ANVIL_VERSION from npm"
  mkdir -p "$anvil_dir"
  (cd "$anvil_dir" && npm install --no-audit --no-fund --silent --prefix . "@foundry-rs/anvil-linux-amd64@$ANVIL_VERSION")
fi
if [ ! -x "$anvil_bin" ]; then
  found="$(find "$anvil_dir/node_modules/@foundry-rs" -type f -name anvil -perm -u+x | head -1)"
  [ -n "$found" ] || { echo "install-deps: anvil binary not found after npm install" >&2; exit 1; }
  mkdir -p "$(dirname "$anvil_bin")"; ln -sf "$found" "$anvil_bin"
fi
mkdir -p "$top/.deps/bin"
ln -sf "$anvil_bin" "$top/.deps/bin/anvil"

cast_dir="$top/.deps/cast"
cast_bin="$cast_dir/node_modules/@foundry-rs/cast-linux-amd64/bin/cast"
if [ ! -x "$cast_bin" ] || ! "$cast_bin" --version 2>/dev/null | grep -q "$CAST_VERSION"; then
  echo "install-deps: installing cast $CAST_VERSION from npm"
  mkdir -p "$cast_dir"
  (cd "$cast_dir" && npm install --no-audit --no-fund --silent --prefix . "@foundry-rs/cast-linux-amd64@$CAST_VERSION")
fi
[ -x "$cast_bin" ] || { echo "install-deps: cast binary not found after npm install" >&2; exit 1; }
ln -sf "$cast_bin" "$top/.deps/bin/cast"
echo "install-deps: ok (anvil: $("$top/.deps/bin/anvil" --version | head -1); cast: $("$top/.deps/bin/cast" --version | head -1))"
