#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make lint` and `make format`.
#   scripts/lint.sh          checks, without changing anything: Swift formatting (swift format
#                            lint --strict, .swift-format), C formatting (clang-format,
#                            .clang-format), license headers (scripts/check-licenses.sh), the
#                            Prometheus files (promtool) and the shell scripts (shellcheck).
#                            Runs every check, then exits 1 if any failed.
#   scripts/lint.sh --fix    rewrites the Swift and C sources in place (`make format`).
# Files: those git tracks plus new ones it does not ignore (generated code is ignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

swift=${SWIFT:-swift}
files() {
	local file
	while IFS= read -r -d '' file; do
		[[ -f $file ]] && printf '%s\0' "$file"
	done < <(git ls-files -z --cached --others --exclude-standard -- "$@")
}
mapfile -d '' swift_files < <(files '*.swift')
mapfile -d '' c_files < <(files '*.c' '*.h')
mapfile -d '' shell_files < <(files '*.sh' .ci/run)

if [[ ${1:-} == --fix ]]; then
	"$swift" format format --in-place --parallel "${swift_files[@]}"
	clang-format -i "${c_files[@]}"
	echo "format: ${#swift_files[@]} Swift and ${#c_files[@]} C files formatted"
	exit 0
fi

failed=()
check() {
	local name=$1
	shift
	echo "--- lint: $name" >&2
	"$@" || failed+=("$name")
}
check "Swift format" "$swift" format lint --strict --parallel "${swift_files[@]}"
check "C format" clang-format --dry-run --Werror "${c_files[@]}"
check "licenses" scripts/check-licenses.sh
check "Prometheus rules" promtool check rules deploy/prometheus/rules.yml
check "Prometheus rule tests" promtool test rules deploy/prometheus/rules_test.yml
check "Prometheus config" promtool check config --syntax-only deploy/prometheus/prometheus.yml
check "shell scripts" shellcheck "${shell_files[@]}"

if ((${#failed[@]})); then
	summary=$(printf '%s, ' "${failed[@]}")
	echo "lint: failed: ${summary%, }" >&2
	echo "lint: 'make format' fixes Swift and C formatting" >&2
	exit 1
fi
echo "lint: all checks passed"
