#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The kernel matrix: runs the privileged end-to-end tests (the built test binary, unchanged)
# on this host's kernel and under each other kernel booted with scripts/run-in-kernel.sh, and
# prints kernel x snapshot mode x hook variants x tests passed/failed/skipped.
#
# Usage: scripts/test-kernels.sh [--core] [KERNEL...]
#   --core   the core subset make test runs: flows of both families agree with ss (and the
#            default mode and variants are the ones the kernel probe predicts), closes are
#            counted exactly, nothing stays attached after exit
#   KERNEL   as scripts/run-in-kernel.sh takes it; default: host 6.1 6.12 ("host" runs natively)
# Needs: swift build --build-tests, make kernel-probe, scripts/install-deps.sh kernels.
# Environment: FLOWSTAT_CHURN_CONNECTIONS (default 2000: emulation runs 20-27x slower).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

filter='EndToEndTests'
if [[ ${1:-} == --core ]]; then
	filter='EndToEndTests/(endToEnd|churnIsCountedExactly|killNineLeavesNothingAttached)\('
	shift
fi
kernels=("$@")
((${#kernels[@]})) || kernels=(host 6.1 6.12)

tests=$root/.build/debug/flowstatPackageTests.xctest
[[ -x $tests ]] || { echo "test-kernels: no $tests: run swift build --build-tests" >&2; exit 2; }
[[ -x .build-probe/kernel-probe ]] || { echo "test-kernels: run make kernel-probe" >&2; exit 2; }
export FLOWSTAT_CHURN_CONNECTIONS=${FLOWSTAT_CHURN_CONNECTIONS:-2000}

# One run: the kernel's release, then the tests through the summary (its last line counts them).
# shellcheck disable=SC2016 # expanded by the inner bash, under the booted kernel
run_tests=(bash -c 'echo "kernel-release: $(uname -r)"; set -o pipefail
	"$0" --testing-library swift-testing --filter "$1" 2>&1 | scripts/test-summary.py' "$tests" "$filter")

rows=() failed=0 passed=0 failures=0 skipped=0
for kernel in "${kernels[@]}"; do
	log=$(mktemp)
	started=$(date +%s)
	echo "=== kernel $kernel: $filter" >&2
	if [[ $kernel == host ]]; then
		"${run_tests[@]}" 2>&1 | tee "$log" >&2 && status=0 || status=$?
	else
		scripts/run-in-kernel.sh "$kernel" -- "${run_tests[@]}" 2>&1 | tee "$log" >&2 && status=0 || status=$?
	fi
	seconds=$(($(date +%s) - started))
	release=$(sed -n 's/^kernel-release: //p' "$log" | head -n1)
	# The end-to-end test prints what the probe found and what the agent chose.
	agent=$(grep -o 'agent: mode [a-z_]*, hooks .*' "$log" | head -n1 | sed 's/^agent: //')
	counts=$(grep -E '^[0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n1)
	if [[ -n $counts ]]; then
		read -r p _ f _ s _ <<<"${counts//,/}"
		passed=$((passed + p)) failures=$((failures + f)) skipped=$((skipped + s))
	else
		counts="no test ran"
		failures=$((failures + 1))
	fi
	rows+=("| $kernel | ${release:-?} | ${agent:-?} | $counts | $status | ${seconds} s |")
	((status == 0)) || failed=1
	rm -f "$log"
done

echo
echo "| kernel | release | mode and hooks attached (default) | tests | exit | time |"
echo "|---|---|---|---|---|---|"
printf '%s\n' "${rows[@]}"
echo
echo "matrix: $passed passed, $failures failed, $skipped skipped"
exit "$failed"
