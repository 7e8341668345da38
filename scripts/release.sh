#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# `make release`: builds the release binary from a clean tree and packs
#   dist/flowstat-VERSION-linux-ARCH.tar.gz          the binary, deploy/, README.md,
#                                                    CHANGELOG.md, CONTRIBUTING.md, LICENSE,
#                                                    LICENSES/, THIRD_PARTY_LICENSES
#   dist/flowstat-VERSION-linux-ARCH.tar.gz.sha256   its checksum (sha256sum -c)
# VERSION is scripts/version.sh's (git describe). The tarball is reproducible for the same
# binary: entries sorted by name, owner and group 0, modes normalised, every mtime the
# commit's time, gzip without a name or time stamp.
# Refuses a tree with uncommitted changes or untracked files: a release must be a commit.
# --allow-dirty (for scripts/test-release.sh only) packs a dirty tree, versioned "-dirty".
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"

allow_dirty=0
[[ ${1:-} == --allow-dirty ]] && allow_dirty=1

check_clean() {
	local changes
	changes=$(git status --porcelain --untracked-files=normal)
	if [[ -n $changes ]]; then
		if ((allow_dirty)); then
			echo "release: packing a dirty tree (--allow-dirty): not a release" >&2
			return
		fi
		{
			echo "release: the work tree is not clean; a release is built from a commit only."
			echo "release: commit or stash these first (git status):"
			mapfile -t lines <<<"$changes"
			printf '  %s\n' "${lines[@]:0:20}"
		} >&2
		exit 1
	fi
}

git rev-parse --git-dir >/dev/null 2>&1 || {
	echo "release: not a git repository; a release is built from a commit" >&2
	exit 1
}
check_clean

version=$(scripts/version.sh)
revision=$(scripts/version.sh --revision)
arch=$(uname -m)
name=flowstat-$version-linux-$arch
echo "release: $name (commit $revision)" >&2

# The Makefile regenerates the skeleton and the version header, then builds.
make --no-print-directory build
# The build must not have changed a tracked file (Package.resolved, say).
check_clean
binary=.build/release/flowstat
built=$("$binary" --version)
[[ $built == "$version" ]] || {
	echo "release: the binary says '$built', expected '$version'" >&2
	exit 1
}

stage=.build/release-stage
rm -rf "$stage"
mkdir -p "$stage/$name" dist
# Committed files exactly as committed.
git archive --format=tar HEAD deploy README.md CHANGELOG.md CONTRIBUTING.md LICENSE LICENSES |
	tar -x -C "$stage/$name"
cp "$binary" "$stage/$name/flowstat"
# Debug sections are most of the binary's size; symbols stay for backtraces.
strip --strip-debug "$stage/$name/flowstat"
scripts/third-party-licenses.py "$binary" "$stage/$name/THIRD_PARTY_LICENSES"

commit_time=$(git log -1 --format=%ct HEAD)
tarball=dist/$name.tar.gz
tar --sort=name --format=gnu --owner=0 --group=0 --numeric-owner \
	--mode='u+rwX,go+rX,go-w' --mtime="@$commit_time" \
	-C "$stage" -cf - "$name" | gzip -9 -n >"$tarball.tmp"
mv "$tarball.tmp" "$tarball"
(cd dist && sha256sum "$name.tar.gz" >"$name.tar.gz.sha256")
rm -rf "$stage"
echo "release: $tarball ($(du -h "$tarball" | cut -f1)), $tarball.sha256" >&2
echo "$tarball"
