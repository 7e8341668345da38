#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Checks that every tracked source file states its license (part of `make lint`):
#   - an `SPDX-License-Identifier:` line in its first five lines, or, for a format
#     without comments (JSON), a sidecar FILE.license holding that line;
#   - the expression is one the project uses, and each license it names has its text
#     in LICENSES/;
#   - the BPF programs and the headers they include (bpf/, *.bpf.c, *.bpf.h) are
#     "(GPL-2.0-only OR BSD-2-Clause)", and every BPF object's license section is
#     "Dual BSD/GPL", so the kernel grants the GPL-only helpers;
#   - everything else is Apache-2.0.
# Usage: scripts/check-licenses.sh (from anywhere in the repository). Exits 1 on a finding.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bpf_license='(GPL-2.0-only OR BSD-2-Clause)'
user_license='Apache-2.0'
failures=0
fail() {
	echo "check-licenses: $*" >&2
	failures=$((failures + 1))
}

for text in Apache-2.0 GPL-2.0-only BSD-2-Clause; do
	[[ -s LICENSES/$text.txt ]] || fail "LICENSES/$text.txt is missing"
done
[[ -s LICENSE ]] || fail "LICENSE is missing"

# Source files: code, scripts, build and deployment files. Not checked: prose (*.md),
# license texts, tool configuration (.gitignore, .swift-format, .clang-format), generated
# files (Package.resolved, which SwiftPM rewrites) and the golden files tests compare
# output with (Tests/*/Fixtures/golden/).
is_source() {
	case $1 in
	*.swift | *.c | *.h | *.py | *.sh | *.yml | *.yaml | *.json | *.service | Makefile | */Makefile | .ci/run) return 0 ;;
	esac
	# Any other executable script.
	[[ -x $1 ]] && head -c 2 "$1" | grep -q '^#!'
}

while IFS= read -r -d '' file; do
	[[ -f $file ]] || continue # deleted in the work tree, not yet committed
	# Recorded test outputs, compared byte for byte: not source.
	[[ $file == */Fixtures/golden/* ]] && continue
	is_source "$file" || continue
	if [[ $file == *.json ]]; then
		[[ -f $file.license ]] || {
			fail "$file: JSON has no comments; add $file.license with its SPDX-License-Identifier line"
			continue
		}
		header=$(grep -m1 -o 'SPDX-License-Identifier: .*' "$file.license" || true)
	else
		header=$(head -n 5 "$file" | grep -m1 -o 'SPDX-License-Identifier: .*' || true)
	fi
	if [[ -z $header ]]; then
		fail "$file: no SPDX-License-Identifier line in its first 5 lines"
		continue
	fi
	expression=${header#SPDX-License-Identifier: }
	expression=${expression%% \*/} # C block comment
	expression=${expression%"${expression##*[![:space:]]}"}
	case $file in
	bpf/* | *.bpf.c | *.bpf.h) want=$bpf_license ;;
	*) want=$user_license ;;
	esac
	[[ $expression == "$want" ]] || fail "$file: SPDX-License-Identifier is '$expression', expected '$want'"
	if [[ $file == *.bpf.c ]] && ! grep -q 'SEC("license") = "Dual BSD/GPL"' "$file"; then
		fail "$file: BPF license section is not \"Dual BSD/GPL\" (the kernel would refuse GPL-only helpers)"
	fi
done < <(git ls-files -z --cached --others --exclude-standard)

if ((failures)); then
	echo "check-licenses: $failures finding(s); README.md's License section says which license a file takes" >&2
	exit 1
fi
echo "check-licenses: every source file states its license"
