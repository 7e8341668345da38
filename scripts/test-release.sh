#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The release test (`make test` runs it): scripts/release.sh packs the release, and the
# tarball is checked as a user would get it:
#   - its checksum verifies (sha256sum -c), it unpacks with the files the release promises,
#     every entry owned by 0:0 and dated at the commit's time;
#   - the unpacked `flowstat --version` is git describe's version of this commit;
#   - packing again gives the same bytes (reproducible for the same binary);
#   - a tree with an untracked file is refused, with a message (in a temporary clone);
#   - the version follows tags, and a tree without git builds as "unknown" (in temporary
#     clones: nothing is tagged in this repository).
# The release build is the one in .build/release (`make build`): reused when it is current.
# A dirty tree is packed with --allow-dirty (versioned "-dirty"); a clean one as a release.
# Prints "release: N passed, N failed" last; exits 1 on a failure.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root" || exit 2

passed=0 failed=0
ok() {
	echo "release test: ok: $*"
	passed=$((passed + 1))
}
not_ok() {
	echo "release test: FAILED: $*" >&2
	failed=$((failed + 1))
}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# git describe of this commit, as scripts/version.sh should have it.
if expected=$(git describe --tags --match 'v[0-9]*' --dirty 2>/dev/null); then
	expected=${expected#v}
else
	expected=0.0.0-dev+$(git rev-parse --short=7 HEAD)
	git diff --quiet HEAD -- || expected+=-dirty
fi

flags=()
[[ -z $(git status --porcelain --untracked-files=normal) ]] || flags=(--allow-dirty)
if tarball=$(scripts/release.sh "${flags[@]}" | tail -n1) && [[ -f $tarball ]]; then
	ok "scripts/release.sh${flags[*]:+ ${flags[*]}} packed $tarball"
else
	not_ok "scripts/release.sh${flags[*]:+ ${flags[*]}} failed"
	echo "release: $passed passed, $((failed)) failed"
	exit 1
fi
name=$(basename "$tarball" .tar.gz)
arch=$(uname -m)

if [[ $name == "flowstat-$expected-linux-$arch" ]]; then
	ok "named $name"
else
	not_ok "named $name, expected flowstat-$expected-linux-$arch"
fi

if (cd "$(dirname "$tarball")" && sha256sum --quiet -c "$name.tar.gz.sha256"); then
	ok "checksum verifies"
else
	not_ok "checksum does not verify"
fi

tar -xzf "$tarball" -C "$work"
missing=()
for file in flowstat README.md CHANGELOG.md CONTRIBUTING.md LICENSE LICENSES/Apache-2.0.txt \
	LICENSES/GPL-2.0-only.txt LICENSES/BSD-2-Clause.txt THIRD_PARTY_LICENSES \
	deploy/systemd/flowstat.service deploy/prometheus/rules.yml deploy/kubernetes/daemonset.yaml; do
	[[ -e $work/$name/$file ]] || missing+=("$file")
done
if ((${#missing[@]} == 0)); then
	ok "holds the binary, deploy kit, docs and licenses"
else
	not_ok "missing from the tarball: ${missing[*]}"
fi

for needed in libbpf libelf "zlib" libdeflate libcrypt swift-nio-ssl BoringSSL swift-nio swift-log \
	swift-argument-parser Yams "Runtime Library Exception"; do
	grep -q "$needed" "$work/$name/THIRD_PARTY_LICENSES" || missing+=("$needed")
done
if ((${#missing[@]} == 0)); then
	ok "THIRD_PARTY_LICENSES names every linked library and package"
else
	not_ok "THIRD_PARTY_LICENSES lacks: ${missing[*]}"
fi

commit_time=$(git log -1 --format=%ct HEAD)
# tar prints local times: compare in UTC.
odd=$(TZ=UTC tar --list --verbose --numeric-owner --full-time -zf "$tarball" |
	awk -v when="$(TZ=UTC date -d "@$commit_time" '+%Y-%m-%d %H:%M:%S')" \
		'$2 != "0/0" || ($4 " " $5) != when { print }')
if [[ -z $odd ]]; then
	ok "every entry owned by 0/0 and dated at the commit"
else
	not_ok "entries with another owner or time:"$'\n'"$odd"
fi

version=$("$work/$name/flowstat" --version 2>&1)
if [[ $version == "$expected" ]]; then
	ok "flowstat --version says $version"
else
	not_ok "flowstat --version says '$version', expected '$expected'"
fi

first=$(cut -d' ' -f1 "$tarball.sha256")
if scripts/release.sh "${flags[@]}" >/dev/null && [[ $(cut -d' ' -f1 "$tarball.sha256") == "$first" ]]; then
	ok "packing again gives the same bytes"
else
	not_ok "packing again gave other bytes ($first, then $(cut -d' ' -f1 "$tarball.sha256"))"
fi

# In temporary clones: this repository is left as it is.
clone=$work/clone
git clone -q --shared "$root" "$clone"
touch "$clone/stray-file"
if message=$("$clone/scripts/release.sh" 2>&1); then
	not_ok "a tree with an untracked file was released"
elif grep -q "not clean" <<<"$message" && grep -q stray-file <<<"$message"; then
	ok "a dirty tree is refused with a message naming the change"
else
	not_ok "a dirty tree failed without saying why: $message"
fi
rm "$clone/stray-file"

# A commit of its own, so that no other tag of this repository sits on it.
git -C "$clone" -c user.name=test -c user.email=test@test commit -q --allow-empty -m "to be tagged"
git -C "$clone" -c user.name=test -c user.email=test@test tag -a v9.8.7 -m "test tag"
if [[ $("$clone/scripts/version.sh") == 9.8.7 ]]; then
	ok "on tag v9.8.7 the version is 9.8.7"
else
	not_ok "on tag v9.8.7 the version is $("$clone/scripts/version.sh")"
fi
git -C "$clone" -c user.name=test -c user.email=test@test commit -q --allow-empty -m "after the tag"
after=9.8.7-1-g$(git -C "$clone" rev-parse --short HEAD)
if [[ $("$clone/scripts/version.sh") == "$after" ]]; then
	ok "a commit later it is $after"
else
	not_ok "a commit later it is $("$clone/scripts/version.sh"), expected $after"
fi
"$clone/scripts/version.sh" --header "$work/version.h"
if grep -q "#define FLOWSTAT_VERSION \"$after\"" "$work/version.h" &&
	grep -q "#define FLOWSTAT_REVISION \"$(git -C "$clone" rev-parse HEAD)\"" "$work/version.h"; then
	ok "the generated header carries version and commit"
else
	not_ok "generated header: $(cat "$work/version.h")"
fi
before=$(stat -c %Y "$work/version.h")
touch -d '2000-01-01' "$work/version.h"
"$clone/scripts/version.sh" --header "$work/version.h"
if [[ $(stat -c %Y "$work/version.h") == "$(date -d 2000-01-01 +%s)" ]]; then
	ok "an unchanged version leaves the header untouched (no rebuild)"
else
	not_ok "the header was rewritten with the same version (was $before)"
fi

mkdir -p "$work/tarball/scripts"
cp scripts/version.sh "$work/tarball/scripts/"
if [[ $("$work/tarball/scripts/version.sh") == unknown ]]; then
	ok "without git the version is unknown"
else
	not_ok "without git the version is $("$work/tarball/scripts/version.sh")"
fi

echo "release: $passed passed, $failed failed"
((failed == 0))
