#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Writes THIRD_PARTY_LICENSES for a release: the licenses of the code the flowstat binary
carries besides flowstat's own, gathered from this machine at release time, not copied by
hand:

  - the Swift runtime and libraries linked statically (--static-swift-stdlib): the
    toolchain's LICENSE.txt (Apache-2.0 with the Runtime Library Exception); ICU, which
    Foundation carries, from Debian's ICU copyright file (the toolchain ships no copy);
  - the Swift packages pinned in Package.resolved, linked statically: every LICENSE*,
    NOTICE* and COPYING* file of their checkouts in .build/checkouts (BoringSSL, vendored by
    swift-nio-ssl, also gets its revision and its files' copyright lines);
  - the shared libraries the binary links (ldd), each by its Debian package's
    /usr/share/doc/PACKAGE/copyright, except the C library itself (libc6);
  - at the end, the full texts of /usr/share/common-licenses/* those files refer to.

Usage: scripts/third-party-licenses.py BINARY OUTPUT (run from anywhere; `make release`).
"""

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RULE = "=" * 78


def section(title: str, body: str) -> str:
    return f"{RULE}\n{title}\n{RULE}\n\n{body.rstrip()}\n\n"


def swift_toolchain_license() -> Path:
    swift = shutil.which(os.environ.get("SWIFT", "swift"))
    if not swift:
        sys.exit("third-party-licenses: swift is not on PATH")
    license_file = Path(swift).resolve().parent.parent / "share" / "swift" / "LICENSE.txt"
    if not license_file.is_file():
        sys.exit(f"third-party-licenses: no {license_file}")
    return license_file


def dpkg_package_of(path: str) -> str | None:
    result = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
    if result.returncode != 0:
        # /lib is a link to /usr/lib on Debian 12: dpkg may know the file by either name.
        other = path[4:] if path.startswith("/usr/") else "/usr" + path
        result = subprocess.run(["dpkg", "-S", other], capture_output=True, text=True)
        if result.returncode != 0:
            return None
    return result.stdout.split(":", 1)[0].strip()


def shared_libraries(binary: str) -> list[tuple[str, str]]:
    """(library path, Debian package) for every library ldd resolves."""
    output = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    libraries = []
    for line in output.splitlines():
        match = re.search(r"=>\s+(/\S+)", line) or re.match(r"\s*(/\S+)\s+\(", line)
        if not match:
            continue  # linux-vdso
        path = match.group(1)
        package = dpkg_package_of(os.path.realpath(path)) or dpkg_package_of(path)
        if package is None:
            sys.exit(f"third-party-licenses: no Debian package owns {path}")
        libraries.append((path, package))
    return libraries


def debian_copyright(package: str) -> str:
    path = Path("/usr/share/doc") / package / "copyright"
    if not path.is_file():
        sys.exit(f"third-party-licenses: no {path}")
    return path.read_text(errors="replace")


def first_stanza(copyright_text: str) -> str:
    """A DEP-5 copyright file's header and its first `Files: *` stanza (upstream's license,
    without the Debian packaging's)."""
    return "\n\n".join(copyright_text.split("\n\n")[:2])


def package_license_files(checkout: Path) -> list[Path]:
    found = []
    for dirpath, dirnames, filenames in os.walk(checkout):
        dirnames[:] = sorted(d for d in dirnames if d not in (".git", "Tests", "Benchmarks", "IntegrationTests"))
        for name in sorted(filenames):
            if re.match(r"(LICEN[CS]E|NOTICE|COPYING)([.-].*)?$", name, re.IGNORECASE):
                found.append(Path(dirpath) / name)
    return found


def boringssl_note(checkout: Path) -> str:
    vendored = checkout / "Sources" / "CNIOBoringSSL"
    if not vendored.is_dir():
        return ""
    revision = (vendored / "hash.txt").read_text().strip() if (vendored / "hash.txt").is_file() else ""
    copyrights = set()
    for dirpath, _, filenames in os.walk(vendored):
        for name in filenames:
            try:
                text = (Path(dirpath) / name).read_text(errors="replace")
            except OSError:
                continue
            for line in text.splitlines()[:40]:
                found = re.search(r"(Copyright\b.*)", line)
                if found:
                    copyrights.add(found.group(1).strip().rstrip("*/ ").strip())
    lines = [
        "BoringSSL, vendored by swift-nio-ssl in Sources/CNIOBoringSSL and linked statically.",
        revision,
        "",
        "Its source files are licensed under the Apache License, Version 2.0 (the text is in",
        "the Swift runtime's section above and in flowstat's LICENSE). The fiat-crypto files in",
        "third_party/fiat are generated code that upstream licenses under the MIT License, the",
        "Apache License 2.0 or the BSD 1-Clause License, at the user's choice; used here under",
        "Apache-2.0. The copyright notices its files carry:",
        "",
    ]
    lines += [f"  {c}" for c in sorted(copyrights)]
    return "\n".join(lines)


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    binary, output = sys.argv[1], Path(sys.argv[2])
    out = []
    out.append(
        "Third-party software in the flowstat release binary\n"
        "\n"
        "flowstat itself is licensed under Apache-2.0 (LICENSE); its BPF program under\n"
        "GPL-2.0-only OR BSD-2-Clause (LICENSES/). The binary also carries the software below:\n"
        "statically linked (the Swift runtime and the Swift packages), or linked dynamically\n"
        "from the host's shared libraries (listed so that a deployment knows what it runs).\n"
        "Generated by scripts/third-party-licenses.py at release time.\n\n"
    )

    swift_license = swift_toolchain_license()
    out.append(section(
        "Swift runtime and core libraries (statically linked: Swift standard library, Foundation,\n"
        "Dispatch, Synchronization) -- Apache-2.0 with the Runtime Library Exception",
        swift_license.read_text()))
    icu = sorted(Path("/usr/share/doc").glob("libicu[0-9]*/copyright"))
    if not icu:
        sys.exit("third-party-licenses: no Debian ICU copyright file (apt-get install libicu72)")
    out.append(section(
        "ICU (statically linked through Foundation: swift-foundation-icu) -- the Unicode/ICU\n"
        "license. The Swift toolchain ships no copy of it; this text is from Debian's\n"
        f"{icu[-1].parent.name} copyright file, the same upstream project (the version may differ)",
        first_stanza(icu[-1].read_text())))

    pins = json.loads((ROOT / "Package.resolved").read_text())["pins"]
    checkouts = {p.name.lower(): p for p in (ROOT / ".build" / "checkouts").iterdir() if p.is_dir()}
    for pin in sorted(pins, key=lambda p: p["identity"]):
        name = pin["location"].rstrip("/").removesuffix(".git").rsplit("/", 1)[-1]
        checkout = checkouts.get(name.lower())
        if checkout is None:
            sys.exit(f"third-party-licenses: no checkout of {name} in .build/checkouts (build first)")
        files = package_license_files(checkout)
        if not files:
            sys.exit(f"third-party-licenses: {checkout} has no LICENSE file")
        body = []
        for file in files:
            body.append(f"--- {name}/{file.relative_to(checkout)}\n\n{file.read_text(errors='replace').rstrip()}\n")
        if name == "swift-nio-ssl":
            body.append(boringssl_note(checkout))
        version = pin["state"].get("version") or pin["state"].get("revision", "")
        out.append(section(f"{name} {version} ({pin['location']}) -- statically linked", "\n".join(body)))

    referenced = set()
    seen: dict[str, str] = {}
    for path, package in shared_libraries(binary):
        if package.startswith("libc6"):
            continue  # the C library of the host itself
        text = debian_copyright(package)
        title = f"{os.path.basename(path)} (Debian package {package}) -- dynamically linked"
        if text in seen:
            # libstdc++6 and libgcc-s1 share GCC's copyright file.
            out.append(section(title, f"The same copyright file as {seen[text]} above."))
            continue
        seen[text] = package
        referenced.update(re.findall(r"/usr/share/common-licenses/([A-Za-z0-9.+-]+[A-Za-z0-9+])", text))
        out.append(section(title, text))

    texts: dict[Path, list[str]] = {}  # GPL is a link to GPL-3, LGPL to LGPL-3
    for name in sorted(referenced):
        path = Path("/usr/share/common-licenses") / name
        if path.is_file():
            texts.setdefault(path.resolve(), []).append(name)
    for path, names in sorted(texts.items()):
        out.append(section(f"Full text of {', '.join(names)} (referred to above)", path.read_text()))

    output.write_text("".join(out))


if __name__ == "__main__":
    main()
