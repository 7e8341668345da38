#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Boots another kernel under QEMU (virtme-ng, emulated: no KVM) over the host's
# root filesystem and runs COMMAND in it as root, from the current directory.
# Prints COMMAND's output and exits with its status.
#
# Usage: scripts/run-in-kernel.sh [--rwdir DIR]... [--out DIR] KERNEL -- COMMAND...
#   KERNEL   6.1 | 6.12 | any prefix of a kernel unpacked in .kernels/ by
#            `scripts/install-deps.sh kernels` (e.g. 6.1.0-57) | a path to a vmlinuz
#   --out    a host directory the guest may write to (default: a fresh temporary
#            one, removed afterwards); the guest sees it as $KERNEL_RUN_OUT
#   --rwdir  another host directory to make writable in the guest (repeatable)
# Environment: KERNEL_RUN_TIMEOUT (seconds, default 3600), KERNEL_RUN_MEMORY
# (default 3G), KERNEL_RUN_CPUS (default 2), KERNEL_RUN_VERBOSE=1 (boot log),
# KERNEL_RUN_KVM=1 (try KVM: off by default, as the development VMs' nested
# KVM, kvm-pvm, cannot run these guests).
# Exit status: COMMAND's; 124 when the timeout hit; 125 when the guest never
# reported a status (boot failure, kernel panic, OOM of the VM).
#
# The guest's / is the host's over 9p, read-only (so is /work, live: a rebuild
# during a run shows through); /tmp, /etc, /var, /usr, /home, /opt and /srv are
# copy-on-write overlays whose changes vanish with the VM; /run is a tmpfs.
# COMMAND's stdin is /dev/null. The guest gets PATH, HOME, LANG, LC_ALL, TZ,
# CI, LD_LIBRARY_PATH and every FLOWSTAT_* variable of the caller.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

die() {
	echo "run-in-kernel: $*" >&2
	exit 2
}

out="" rwdirs=()
while (($#)); do
	case $1 in
	--out) out=$2 && shift 2 ;;
	--out=*) out=${1#--out=} && shift ;;
	--rwdir) rwdirs+=("$2") && shift 2 ;;
	--rwdir=*) rwdirs+=("${1#--rwdir=}") && shift ;;
	-h | --help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' && exit 0 ;;
	*) break ;;
	esac
done
if (($# < 3)) || [[ $2 != -- ]]; then
	die "usage: $0 [--rwdir DIR]... [--out DIR] KERNEL -- COMMAND..."
fi
spec=$1
shift 2

# A bare version picks the newest matching kernel unpacked in .kernels/; the
# [.-] keeps "6.1" from matching 6.12.
if [[ -f $spec ]]; then
	kimg=$(realpath "$spec")
else
	kimg=$(find "$root/.kernels" -path "*/linux-image-${spec}[.-]*/boot/vmlinuz-*" 2>/dev/null | sort -V | tail -n1)
	[[ -n $kimg ]] || die "no kernel '$spec' in $root/.kernels (run scripts/install-deps.sh kernels)"
fi

venv="$root/.venv-kernels"
[[ -x $venv/bin/vng ]] || die "virtme-ng is missing (run scripts/install-deps.sh kernels)"
# vng runs virtme-run through the shell, so the venv's bin must be on PATH;
# the guest gets the caller's PATH (or its python3 would be the venv's).
caller_path=$PATH
export PATH="$venv/bin:$PATH"

if [[ -z $out ]]; then
	out=$(mktemp -d "${TMPDIR:-/tmp}/run-in-kernel.XXXXXX")
	trap 'rm -rf "$out"' EXIT
else
	mkdir -p "$out"
	out=$(realpath "$out")
fi
rm -f "$out/.status"

# Variables handed to the guest: virtme's init starts COMMAND with a bare
# environment.
env_lines="export PATH=$(printf '%q' "$caller_path")"$'\n'
for name in HOME LANG LC_ALL TZ CI LD_LIBRARY_PATH $(compgen -v FLOWSTAT_ || true); do
	[[ -v $name ]] && env_lines+="export $name=$(printf '%q' "${!name}")"$'\n'
done
env_lines+="export KERNEL_RUN_OUT=$(printf '%q' "$out")"$'\n'

# The guest side lives in the shared directory: the guest reads its / from the
# host, so it sees this file.
guest="$out/.guest.sh"
cat >"$guest" <<EOF
#!/bin/bash
$env_lines
cmd=($(printf '%q ' "$@"))
cwd=$(printf '%q' "$PWD")
out=$(printf '%q' "$out")
EOF
cat >>"$guest" <<'EOF'
# Without udev on the host (there is none in these VMs), virtme's init finds no
# /dev/virtio-ports/* links and falls back to running us on the serial console,
# where stdout and stderr merge with kernel messages and the exit status is
# lost (vng then exits 255). Name the ports ourselves and use them as virtme's
# init would have.
ports=0
if [[ ! -e /dev/virtio-ports/virtme.stdout && -d /sys/class/virtio-ports ]]; then
	mkdir -p /dev/virtio-ports
	for port in /sys/class/virtio-ports/*; do
		ln -sf "/dev/${port##*/}" "/dev/virtio-ports/$(cat "$port/name")"
	done
	if [[ -e /dev/virtio-ports/virtme.stdout && -e /dev/virtio-ports/virtme.stderr ]]; then
		exec >/dev/virtio-ports/virtme.stdout 2>/dev/virtio-ports/virtme.stderr
		# A virtio port takes one opener at a time, so programs that open
		# /dev/stdout themselves get the spare ports.
		if [[ -e /dev/virtio-ports/virtme.dev_stdout ]]; then
			rm -f /dev/stdout /dev/stderr
			ln -s /dev/virtio-ports/virtme.dev_stdout /dev/stdout
			ln -s /dev/virtio-ports/virtme.dev_stderr /dev/stderr
		fi
		ports=1
	fi
fi

setup() {
	# virtme mounts cgroup2 at /sys/fs/cgroup; make sure of it all the same.
	grep -q '^[^ ]* [^ ]* cgroup2 ' /proc/mounts || {
		mkdir -p /sys/fs/cgroup && mount -t cgroup2 none /sys/fs/cgroup
	} || echo "run-in-kernel: cannot mount cgroup2" >&2
	mountpoint -q /sys/fs/bpf || mount -t bpf bpf /sys/fs/bpf 2>/dev/null ||
		echo "run-in-kernel: cannot mount bpffs at /sys/fs/bpf" >&2
	# `ip netns add` bind-mounts into /run/netns; /run is the guest's own tmpfs.
	mkdir -p /run/netns
	if touch /tmp/.run-in-kernel 2>/dev/null; then
		rm -f /tmp/.run-in-kernel
	else
		mount -t tmpfs tmpfs /tmp
	fi
	ip link set lo up
	# Load now what tests would otherwise auto-load one by one.
	modprobe -q veth 2>/dev/null || true
}
setup

cd "$cwd" || exit 125
"${cmd[@]}" </dev/null
rc=$?
echo "$rc" >"$out/.status"
sync "$out/.status" 2>/dev/null
((ports)) && [[ -e /dev/virtio-ports/virtme.ret ]] && echo "$rc" >/dev/virtio-ports/virtme.ret
exit "$rc"
EOF

vng_args=(--run "$kimg" -m "${KERNEL_RUN_MEMORY:-3G}" -p "${KERNEL_RUN_CPUS:-2}" --cwd "$PWD" --rwdir "$out")
for dir in "${rwdirs[@]}"; do
	vng_args+=(--rwdir "$(realpath "$dir")")
done
# On the development VMs /dev/kvm is kvm-pvm: with vng's `-cpu max` QEMU aborts
# (failed to set MSR 0x10a), with other models the guest stalls in the kernel's
# decompressor (dmesg: "kvm-pvm: INTERNAL_ERROR in batch emul"). TCG works,
# 20-30x slower.
[[ ${KERNEL_RUN_KVM:-0} == 1 ]] || vng_args+=(--disable-kvm)
# qemu 7.2 ships the old C virtiofsd, which vng tries and waits ~3 s for before
# falling back to 9p anyway.
vng_args+=(--force-9p)
[[ ${KERNEL_RUN_VERBOSE:-0} == 1 ]] && vng_args+=(--verbose)

start=$SECONDS
# QEMU opens /proc/self/fd/1 and /proc/self/fd/2 once per virtio port: on a
# regular file each open gets its own offset and the ports overwrite each
# other's output, so hand it pipes.
exec {errfd}> >(cat >&2)
errpid=$!
set +e
timeout --kill-after=30 "${KERNEL_RUN_TIMEOUT:-3600}" vng "${vng_args[@]}" -- "bash $(printf '%q' "$guest")" \
	</dev/null 2>&"$errfd" | cat
vng_rc=${PIPESTATUS[0]}
set -e
exec {errfd}>&-
wait "$errpid" || true

# The status file is authoritative: it exists only if COMMAND ran to its end.
if [[ -s $out/.status ]]; then
	rc=$(<"$out/.status")
elif ((vng_rc == 124)); then
	echo "run-in-kernel: timed out after ${KERNEL_RUN_TIMEOUT:-3600}s ($kimg)" >&2
	rc=124
else
	echo "run-in-kernel: the guest reported no status (vng exited $vng_rc; rerun with KERNEL_RUN_VERBOSE=1 for the boot log)" >&2
	rc=125
fi
echo "run-in-kernel: ${kimg##*/vmlinuz-}: exit $rc after $((SECONDS - start))s" >&2
exit "$rc"
