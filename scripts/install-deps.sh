#!/usr/bin/env bash
# Installs the Debian packages flowstat needs to build, run and test, skipping
# those already present. Idempotent; needs root (or sudo) only when something
# is missing. Usage: scripts/install-deps.sh [build|test]
set -euo pipefail

build_packages=(libbpf-dev libelf-dev zlib1g-dev libdeflate-dev libcrypt-dev bpftool make)
# openssl makes the TLS tests' certificates; python3-prometheus-client's OpenMetrics
# parser checks the exposition (Debian's python3, /usr/bin/python3); python3-yaml reads
# the DaemonSet; tmux drives `flowstat top`; chromium renders the landing page.
test_packages=(iproute2 prometheus curl python3 python3-prometheus-client python3-yaml openssl gzip procps util-linux
	systemd tmux chromium)

want=("${build_packages[@]}")
[[ ${1:-build} == test ]] && want+=("${test_packages[@]}")

missing=()
for package in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if ((${#missing[@]})); then
	echo "flowstat: installing missing Debian packages: ${missing[*]}" >&2
	sudo=""
	((EUID == 0)) || sudo="sudo"
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# A clang that can target BPF: Swift's toolchain ships one; otherwise Debian's.
if ! clang -print-targets 2>/dev/null | grep -q '\bbpf\b'; then
	echo "flowstat: no clang with the BPF target on PATH; installing Debian's clang" >&2
	${sudo:-} apt-get install -y -qq --no-install-recommends clang llvm >/dev/null
fi
command -v swift >/dev/null || {
	echo "flowstat: 'swift' is not on PATH. Install Swift 6 (https://swift.org/install) and retry." >&2
	exit 1
}
