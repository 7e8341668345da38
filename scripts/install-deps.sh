#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Installs the Debian packages flowstat needs to build, run and test, skipping
# those already present. Idempotent; needs root (or sudo) only when something
# is missing. Usage: scripts/install-deps.sh [build|lint|test|kernels|bench]
# Each group includes the ones before it; `kernels` adds what
# scripts/run-in-kernel.sh needs to run the tests under other kernels. `bench` is `build`
# plus what scripts/bench.py needs: gcc, g++, libdouble-conversion, iproute2, and the seed exporter's
# collector (pyroute2's ss2, with psutil) in .venv-bench/.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

build_packages=(libbpf-dev libelf-dev zlib1g-dev libdeflate-dev libcrypt-dev bpftool make)
# make format and make lint: clang-format for C, shellcheck, promtool (in prometheus).
# Swift's formatter comes with the toolchain (swift format).
lint_packages=(clang-format shellcheck prometheus)
# openssl makes the TLS tests' certificates; python3-prometheus-client's OpenMetrics
# parser checks the exposition (Debian's python3, /usr/bin/python3); python3-yaml reads
# the DaemonSet; tmux drives `flowstat top`; chromium renders the landing page; skopeo
# reads the OCI image as a container tool would, podman with runc runs it (scripts/test-image.sh;
# busybox-static, of the kernel packages, is its workload container's image).
test_packages=(iproute2 prometheus curl python3 python3-prometheus-client python3-yaml openssl gzip procps util-linux
	systemd tmux chromium skopeo podman runc busybox-static)

# qemu boots the kernels (emulated), busybox-static goes into virtme-ng's
# initramfs, kmod's depmod indexes the unpacked modules and its modprobe loads
# them in the guest (veth), file tells virtme-ng a vmlinuz's version.
kernel_packages=(qemu-system-x86 busybox-static kmod file python3 python3-venv)
# The kernels the matrix boots: Debian 12's own series and its backported one.
kernel_series=(6.1 6.12)
virtme_ng_version=1.42
# The seed exporter's collector, as its requirements pin it, with its process lookups.
# The C encoding floor's shortest-double routine: libdouble-conversion (C++).
bench_packages=(iproute2 gcc g++ libdouble-conversion-dev python3 python3-venv procps linux-perf)
pyroute2_version=0.7.8

group=${1:-build}
want=("${build_packages[@]}")
case $group in
build) ;;
lint) want+=("${lint_packages[@]}") ;;
test) want+=("${lint_packages[@]}" "${test_packages[@]}") ;;
kernels) want+=("${lint_packages[@]}" "${test_packages[@]}" "${kernel_packages[@]}") ;;
bench) want+=("${bench_packages[@]}") ;;
*)
	echo "usage: $0 [build|lint|test|kernels|bench]" >&2
	exit 2
	;;
esac
sudo=""
((EUID == 0)) || sudo="sudo"

missing=()
for package in "${want[@]}"; do
	dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q 'install ok installed' || missing+=("$package")
done

if ((${#missing[@]})); then
	echo "flowstat: installing missing Debian packages: ${missing[*]}" >&2
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get update -qq
	apt_updated=1
	$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [[ $group == kernels ]]; then
	# The kernels are unpacked into .kernels/, not installed: installing a
	# linux-image runs initramfs and bootloader hooks and fills /boot and
	# /lib/modules of a machine that never boots them. virtme-ng needs only the
	# vmlinuz and, beside it, lib/modules/VERSION (it links that into the guest).
	for series in "${kernel_series[@]}"; do
		compgen -G "$root/.kernels/linux-image-${series}[.-]*/boot/vmlinuz-*" >/dev/null && continue
		[[ -n ${apt_updated:-} ]] || { $sudo apt-get update -qq && apt_updated=1; }
		# The series' metapackage names the newest ABI (linux-image-amd64 is 6.1's);
		# failing that, the highest version among the packages apt knows.
		meta=linux-image-$series-amd64
		[[ $series == 6.1 ]] && meta=linux-image-amd64
		re=${series//./\\.}
		package=$(apt-cache depends "$meta" 2>/dev/null |
			sed -n "s/^ *Depends: \\(linux-image-${re}[.-][^ ]*-amd64\\)\$/\\1/p" | head -n1)
		[[ -n $package ]] || package=$(apt-cache pkgnames "linux-image-$series" |
			grep -E "^linux-image-${re}[.-][^ ]*-amd64\$" | grep -Ev -- '-(cloud|rt)-amd64$' | sort -V | tail -n1)
		[[ -n $package ]] || {
			echo "flowstat: apt offers no linux-image-$series*-amd64" >&2
			exit 1
		}
		echo "flowstat: unpacking $package into .kernels/" >&2
		tmp=$(mktemp -d "$root/.kernels.tmp.XXXXXX")
		# As root, apt downloads as _apt, which may not reach this folder.
		sandbox=()
		((EUID == 0)) && sandbox=(-o APT::Sandbox::User=root)
		(cd "$tmp" && apt-get download -qq "${sandbox[@]}" "$package")
		dpkg-deb -x "$tmp"/*.deb "$tmp/$package"
		version=$(basename "$tmp/$package"/lib/modules/*)
		# The package's postinst would have run depmod; virtme-ng and the guest's
		# modprobe need modules.dep.
		depmod -b "$tmp/$package" "$version"
		mkdir -p "$root/.kernels"
		mv "$tmp/$package" "$root/.kernels/"
		rm -rf "$tmp"
	done

	# virtme-ng comes from PyPI only; a venv keeps it off the system Python.
	# Debian's interpreter, not a pyenv shim that may change under it.
	venv="$root/.venv-kernels"
	if [[ $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("virtme-ng"))' 2>/dev/null) != "$virtme_ng_version" ]]; then
		echo "flowstat: installing virtme-ng $virtme_ng_version into .venv-kernels/" >&2
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check "virtme-ng==$virtme_ng_version"
	fi
fi

if [[ $group == bench ]]; then
	# pyroute2 comes from PyPI only; a venv keeps it off the system Python.
	venv="$root/.venv-bench"
	if [[ $("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("pyroute2"))' 2>/dev/null) != "$pyroute2_version" ]] ||
		! "$venv/bin/python" -c 'import psutil' 2>/dev/null; then
		echo "flowstat: installing pyroute2 $pyroute2_version and psutil into .venv-bench/" >&2
		rm -rf "$venv"
		/usr/bin/python3 -m venv "$venv"
		"$venv/bin/pip" install -q --disable-pip-version-check "pyroute2==$pyroute2_version" psutil
	fi
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
