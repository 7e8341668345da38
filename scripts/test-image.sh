#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The image test (`make test` runs it after the release test): scripts/image.py builds the
# OCI image from .build/release/flowstat (`make build`), and the image is checked as a
# runtime would take it:
#   - Tests/Support/oci_check.py (the specifications' rules, independent of image.py):
#     blobs hash to their names and sizes, diff_ids match the layers, entries sorted,
#     owned by 0:0, dated at the commit's time;
#   - building it again gives the same manifest digest and the same archive bytes;
#   - the layer holds exactly the binary, the libraries `ldd` lists for it (loader
#     included), the CA bundle, /etc/passwd and /etc/group, /tmp;
#   - its root file system, unpacked, runs the agent with an empty environment, chrooted
#     into it with /proc mounted as a runtime mounts it (`unshare --mount --pid --fork
#     --root ROOTFS --mount-proc`; root only): `flowstat --version` says the binary's
#     version, `flowstat dump --source fake` prints flows, `flowstat serve --source fake`
#     answers /metrics: the libraries are complete. (Without /proc the agent loses its
#     flags: the Swift runtime reads them from /proc/self/cmdline.);
#   - Podman runs the image as the DaemonSet runs the agent and it labels a real Podman
#     container's flow with that container's id (root, podman and runc installed);
#   - skopeo, when installed, reads the archive (`skopeo inspect oci-archive:`) and
#     copies it to a directory, checking every digest on the way.
# Prints "image: N passed, N failed, N skipped" last; exits 1 on a failure.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

passed=0 failed=0 skipped=0
ok() {
	echo "image test: ok: $*"
	passed=$((passed + 1))
}
not_ok() {
	echo "image test: FAILED: $*" >&2
	failed=$((failed + 1))
}
skip() {
	echo "image test: skipped: $*"
	skipped=$((skipped + 1))
}
summary() {
	echo "image: $passed passed, $failed failed, $skipped skipped"
	((failed == 0))
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

binary=.build/release/flowstat
[[ -x $binary ]] || make --no-print-directory build >&2 || {
	not_ok "make build failed"
	summary
	exit 1
}
epoch=$(git log -1 --format=%ct HEAD)
version=$("$binary" --version)

if ! first=$(scripts/image.py --out "$work/first" | tail -n1) || [[ ! -f $first ]]; then
	not_ok "scripts/image.py failed"
	summary
	exit 1
fi
ok "scripts/image.py wrote $(basename "$first")"
if [[ $(basename "$first") == "flowstat-$version-oci.tar" ]]; then
	ok "named after the version"
else
	not_ok "named $(basename "$first"), expected flowstat-$version-oci.tar"
fi

mkdir -p "$work/rootfs"
if report=$(Tests/Support/oci_check.py "$first" "$epoch" "$work/rootfs"); then
	ok "the archive follows the OCI layout and image rules (digests, sizes, diff_ids, 0:0, dated $epoch)"
else
	not_ok "oci_check.py found problems (above)"
fi
digest=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest_digest"])' <<<"$report")

second=$(scripts/image.py --out "$work/second" | tail -n1)
second_digest=$(Tests/Support/oci_check.py "$second" "$epoch" |
	python3 -c 'import json,sys; print(json.load(sys.stdin)["manifest_digest"])')
if [[ $digest == "$second_digest" ]] && cmp -s "$first" "$second"; then
	ok "building again gives the same digest ($digest) and the same archive bytes"
else
	not_ok "building again gave $second_digest (first $digest), or other archive bytes"
fi

# Exactly what ldd lists (paths as ldd prints them), and nothing else but the fixed files.
expected=$( {
	ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
	printf '%s\n' /usr/local/bin/flowstat /etc/ssl/certs/ca-certificates.crt /etc/passwd /etc/group
} | sed 's|^/||' | sort -u)
actual=$(python3 -c 'import json,sys; print("\n".join(sorted(n for n, f in json.load(sys.stdin)["files"].items() if f["type"] == "file")))' <<<"$report")
if [[ $expected == "$actual" ]]; then
	ok "the layer holds the binary, exactly the $(grep -c '\.so' <<<"$actual") libraries ldd lists, CA bundle, passwd, group"
else
	not_ok "layer files differ from ldd's list:"$'\n'"$(diff <(echo "$expected") <(echo "$actual"))"
fi
if cmp -s /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"; then
	ok "the CA bundle is the host's"
else
	not_ok "the CA bundle differs from /etc/ssl/certs/ca-certificates.crt"
fi

if ((EUID != 0)); then
	skip "running the image's root file system needs chroot, which needs root"
else
	# An empty environment and no host paths: only what the image holds can be loaded.
	unshare=$(command -v unshare)
	in_image() { env -i "$unshare" --mount --pid --fork --kill-child --root="$work/rootfs" --mount-proc "$@"; }
	if out=$(in_image /usr/local/bin/flowstat --version 2>&1) && [[ $out == "$version" ]]; then
		ok "in the image's root file system: flowstat --version says $out"
	else
		not_ok "in the image's root file system: flowstat --version: $out"
	fi
	if out=$(in_image /usr/local/bin/flowstat dump --source fake 2>&1) &&
		grep -q ESTAB <<<"$out"; then
		ok "in the image's root file system: flowstat dump --source fake prints $(grep -c ESTAB <<<"$out") flows"
	else
		not_ok "in the image's root file system: flowstat dump --source fake:"$'\n'"$out"
	fi
	# The DaemonSet's command (the image's entrypoint and its args), on the fake source: the
	# HTTP server (NIO, TLS library) answers from inside the image.
	port=$((20000 + RANDOM % 10000))
	env -i "$unshare" --mount --pid --fork --kill-child --root="$work/rootfs" --mount-proc \
		/usr/local/bin/flowstat serve --source fake \
		--web.listen-address="127.0.0.1:$port" >"$work/serve.log" 2>&1 &
	serve=$!
	metrics=""
	for _ in $(seq 50); do
		metrics=$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null) && break
		sleep 0.2
	done
	# unshare ignores SIGTERM while it waits; --kill-child passes its death on to the agent.
	kill -KILL "$serve" 2>/dev/null
	wait "$serve" 2>/dev/null
	if grep -q '^tcp_flow_rtt_seconds{' <<<"$metrics" && grep -q '^flowstat_build_info{' <<<"$metrics"; then
		ok "in the image's root file system: flowstat serve --source fake answers /metrics ($(grep -c '^tcp_flow_rtt_seconds{' <<<"$metrics") flows)"
	else
		not_ok "in the image's root file system: flowstat serve did not answer /metrics:"$'\n'"$(cat "$work/serve.log")"
	fi
fi

# A real container runtime. Podman runs here once configured for this kind of host: runc, as
# crun refuses hybrid cgroup hosts ("cgroups in hybrid mode not supported"); open-file and
# process limits no higher than the host's, as raising them needs CAP_SYS_RESOURCE, which
# root lacks here (podman's defaults otherwise fail in setrlimit); the host's network, as
# the DaemonSet has (and no container network is installed). The agent runs as the DaemonSet
# runs it: host PID namespace, read-only root, only the capabilities it lists (but
# SYS_RESOURCE, for the reason above), /sys/fs/cgroup and BTF mounted read-only, its config
# mounted; it must attach its BPF programs from inside the container and name the flow of a
# second, real Podman container by that container's id.
podman_run() {
	podman --runtime runc run --rm -d --network host \
		--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=4096:4096 "$@"
}
if ((EUID != 0)); then
	skip "podman: running containers needs root"
elif ! command -v podman >/dev/null || ! command -v runc >/dev/null; then
	skip "podman or runc is not installed (scripts/install-deps.sh test installs both)"
elif [[ ! -x /bin/busybox ]]; then
	skip "no /bin/busybox (busybox-static) for the workload container's image"
else
	containers=()
	images=()
	podman_cleanup() {
		((${#containers[@]})) && podman rm -f -t 0 "${containers[@]}" >/dev/null 2>&1
		((${#images[@]})) && podman rmi -f "${images[@]}" >/dev/null 2>&1
	}
	trap 'podman_cleanup; kill "${server:-}" 2>/dev/null; rm -rf "$work"' EXIT
	loaded=$(podman load -q -i "$first" 2>&1 | sed -n 's/^Loaded image: //p' | tail -n1)
	[[ -n $loaded ]] && images+=("$loaded")
	mkdir -p "$work/busybox/bin" "$work/podman-config"
	cp /bin/busybox "$work/busybox/bin/"
	workload_image="localhost/flowstat-test-workload:$$"
	tar -C "$work/busybox" -c . | podman import -q - "$workload_image" >/dev/null && images+=("$workload_image")
	printf 'flowstat:\n  labels: {container: true}\n' >"$work/podman-config/config.yml"

	service_port=$((30000 + RANDOM % 10000))
	python3 Tests/Support/tcp_peer.py serve 127.0.0.1 "$service_port" >"$work/server.out" &
	server=$!
	# The workload connects once, as it starts: the server must be listening by then.
	for _ in $(seq 100); do
		grep -qx ready "$work/server.out" 2>/dev/null && break
		sleep 0.1
	done
	workload=$(podman_run --name "flowstat-test-workload-$$" "$workload_image" \
		/bin/busybox sh -c "/bin/busybox sleep 300 | /bin/busybox nc 127.0.0.1 $service_port" 2>&1) &&
		containers+=("$workload")
	port=$((20000 + RANDOM % 10000))
	agent=$(podman_run --name "flowstat-test-agent-$$" --pid host --cgroupns host --read-only \
		--cap-drop ALL --cap-add BPF,PERFMON,NET_ADMIN,SYS_ADMIN,SYS_PTRACE \
		-v /sys/fs/cgroup:/sys/fs/cgroup:ro -v /sys/kernel/btf:/sys/kernel/btf:ro \
		-v "$work/podman-config:/etc/flowstat:ro" "$loaded" \
		serve "--web.listen-address=127.0.0.1:$port" --config=/etc/flowstat/config.yml 2>&1) &&
		containers+=("$agent")
	if [[ -z $loaded || ${#containers[@]} -ne 2 ]]; then
		not_ok "podman: could not start both containers: image ${loaded:-not loaded}; workload: $workload; agent: $agent"
	else
		# The workload's flow, as the agent inside its container labels it.
		flow=""
		for _ in $(seq 100); do
			metrics=$(curl -sf "http://127.0.0.1:$port/metrics" 2>/dev/null) &&
				flow=$(grep "^tcp_flow_rtt_seconds{.*dport=\"$service_port\".*container=\"$workload\"" <<<"$metrics") &&
				break
			sleep 0.3
		done
		source_kind=$(grep -o '^flowstat_source_info{[^}]*source="[a-z_]*"' <<<"${metrics:-}" | grep -o 'source="[a-z_]*"' | head -n1)
		if [[ -n $flow && $source_kind == 'source="bpf"' ]]; then
			ok "podman runs the image (runc, host limits): the agent attached its BPF programs inside the container and labels the Podman container's flow container=\"${workload:0:12}…\""
		else
			unlabelled=$(grep "^tcp_flow_rtt_seconds{.*dport=\"$service_port\"" <<<"${metrics:-}" | head -n 2)
			state=$(podman ps -a --filter "name=flowstat-test-workload-$$" --format '{{.Status}}' 2>&1)
			not_ok "podman: no flow to port $service_port labelled container=\"$workload\" (source: ${source_kind:-none}; flows to the port: ${unlabelled:-none}; workload container: ${state:-exited and removed}); agent log:"$'\n'"$(podman logs "$agent" 2>&1 | tail -n 20)"
		fi
	fi
fi

if grep -q '^ *image: flowstat:VERSION$' deploy/kubernetes/daemonset.yaml &&
	[[ $(python3 -c 'import json,sys; print(json.load(sys.stdin)["ref_name"])' <<<"$report") == "flowstat:${version//+/-}" ]]; then
	ok "the DaemonSet's image (flowstat:VERSION) is the name the archive carries (flowstat:${version//+/-})"
else
	not_ok "the DaemonSet's image and the archive's name differ"
fi

if command -v skopeo >/dev/null; then
	if inspect=$(skopeo inspect "oci-archive:$first" 2>&1) &&
		[[ $(python3 -c 'import json,sys; print(json.load(sys.stdin)["Digest"])' <<<"$inspect") == "$digest" ]]; then
		ok "skopeo inspect oci-archive: reads it, digest $digest"
	else
		not_ok "skopeo inspect oci-archive: $inspect"
	fi
	if skopeo copy -q "oci-archive:$first" "dir:$work/copy" 2>&1; then
		ok "skopeo copy oci-archive: -> dir: verifies every blob"
	else
		not_ok "skopeo copy failed"
	fi
else
	skip "skopeo is not installed (apt-get install skopeo): the archive was checked by oci_check.py only"
fi

echo "image: $(basename "$first"): manifest $digest, $(du -b "$first" | cut -f1) bytes," \
	"$(du -sb "$work/rootfs" | cut -f1) bytes unpacked"
summary
