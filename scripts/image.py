#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`make image`: flowstat's OCI image, built offline from scratch (no base image).

The root file system holds exactly:
  /usr/local/bin/flowstat                 the release binary, debug sections stripped
  every shared library `ldd` lists for it, at the path ldd prints (the dynamic loader
  included), copied from the files they resolve to
  /etc/ssl/certs/ca-certificates.crt      the host's CA bundle (for the kubelet client)
  /etc/passwd, /etc/group                 root, and nobody/nogroup for `--run-as nobody`
  /tmp (1777); /proc, /sys, /dev empty, for the runtime's mounts

Written as an OCI image layout directory (dist/flowstat-VERSION-oci/) and as that layout
in one tar (dist/flowstat-VERSION-oci.tar, which also carries the manifest.json that
`docker load` reads), for `podman load`, `skopeo copy oci-archive:`, `ctr images import`.

Reproducible: the same binary, libraries and CA bundle give the same digests. Every
entry is sorted by name, owned by 0:0, dated at the commit's time (or
SOURCE_DATE_EPOCH), gzip carries no name or time stamp, and the JSON is written with
sorted keys. Written by hand with the standard library because no packaging tool on this
machine builds an image without a base image or a registry; umoci/skopeo, when
installed, only check the result (scripts/test-image.sh).

Usage: scripts/image.py [--binary PATH] [--out DIR] [--version V] [--epoch SECONDS]
Prints the tarball's path last.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"
ARCHES = {"x86_64": "amd64", "aarch64": "arm64"}


def run(*argv):
    return subprocess.run(argv, check=True, capture_output=True, text=True, cwd=ROOT).stdout.strip()


def linked_libraries(binary):
    """(path in the image, file on the host) for each library ldd lists, the loader included."""
    found = []
    for line in run("ldd", binary).splitlines():
        line = line.strip()
        match = re.match(r"^(\S+) => (/\S+) \(0x[0-9a-f]+\)$", line) or re.match(r"^(/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            path = match.group(match.lastindex)
            found.append((path, os.path.realpath(path)))
        elif "=> not found" in line:
            sys.exit(f"image: {binary} links a library this host lacks: {line}")
        elif not line.startswith("linux-vdso") and "statically linked" not in line:
            sys.exit(f"image: cannot read ldd's line: {line!r}")
    return sorted(set(found))


def stripped(binary, work):
    """The binary as make release ships it: debug sections are most of its size."""
    copy = os.path.join(work, "flowstat")
    with open(binary, "rb") as source, open(copy, "wb") as target:
        target.write(source.read())
    subprocess.run(["strip", "--strip-debug", copy], check=True)
    with open(copy, "rb") as handle:
        return handle.read()


def layer_tar(entries, epoch):
    """entries: {path: (mode, bytes or None for a directory)}; parents are added."""
    paths = dict(entries)
    for path in list(entries):
        parent = os.path.dirname(path)
        while parent and parent not in paths:
            paths[parent] = (0o755, None)
            parent = os.path.dirname(parent)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(paths):
            mode, data = paths[path]
            info = tarfile.TarInfo(path)
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            info.mode = mode
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--binary", default=os.path.join(ROOT, ".build/release/flowstat"))
    parser.add_argument("--out", default=os.path.join(ROOT, "dist"))
    parser.add_argument("--version", default=None, help="default: the binary's --version")
    parser.add_argument("--epoch", type=int, default=None)
    args = parser.parse_args()

    # The binary's own version names the image: it is what the image holds, even when the
    # tree changed since it was built.
    version = args.version or run(os.path.abspath(args.binary), "--version")
    revision = run("scripts/version.sh", "--revision")
    if args.epoch is not None:
        epoch = args.epoch
    elif os.environ.get("SOURCE_DATE_EPOCH"):
        epoch = int(os.environ["SOURCE_DATE_EPOCH"])
    else:
        epoch = int(run("git", "log", "-1", "--format=%ct", "HEAD"))
    # A tag takes [A-Za-z0-9_.-]: semantic versions' build metadata ("+abc1234") becomes "-".
    tag = re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:128]
    arch = ARCHES.get(os.uname().machine, os.uname().machine)
    os.makedirs(args.out, exist_ok=True)
    work = os.path.join(args.out, f".image-{os.getpid()}")
    os.makedirs(work)
    try:
        binary = stripped(args.binary, work)
    finally:
        for name in os.listdir(work):
            os.remove(os.path.join(work, name))
        os.rmdir(work)

    # proc, sys, dev: where the runtime mounts them (the Swift runtime reads its arguments
    # from /proc/self/cmdline: without /proc, flags are lost).
    files = {
        "usr/local/bin/flowstat": (0o755, binary),
        "tmp": (0o1777, None),
        "proc": (0o555, None),
        "sys": (0o555, None),
        "dev": (0o755, None),
    }
    for image_path, host_path in linked_libraries(args.binary):
        with open(host_path, "rb") as handle:
            files[image_path.lstrip("/")] = (0o755, handle.read())
    with open(CA_BUNDLE, "rb") as handle:
        files[CA_BUNDLE.lstrip("/")] = (0o644, handle.read())
    files["etc/passwd"] = (0o644, PASSWD.encode())
    files["etc/group"] = (0o644, GROUP.encode())

    layer = layer_tar(files, epoch)
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=6) as handle:
        handle.write(layer)
    layer_gz = compressed.getvalue()

    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
    labels = {
        "org.opencontainers.image.title": "flowstat",
        "org.opencontainers.image.description": "eBPF TCP flow metrics for Prometheus",
        "org.opencontainers.image.version": version,
        "org.opencontainers.image.revision": revision,
        "org.opencontainers.image.created": created,
        "org.opencontainers.image.licenses": "Apache-2.0 AND (GPL-2.0-only OR BSD-2-Clause)",
    }
    config = canonical(
        {
            "architecture": arch,
            "os": "linux",
            "created": created,
            "config": {
                "Entrypoint": ["/usr/local/bin/flowstat"],
                "Cmd": ["serve"],
                "Env": ["PATH=/usr/local/bin", "SSL_CERT_FILE=" + CA_BUNDLE],
                "ExposedPorts": {"8020/tcp": {}},
                "Labels": labels,
            },
            "rootfs": {"type": "layers", "diff_ids": [digest(layer)]},
            "history": [{"created": created, "created_by": "scripts/image.py (from scratch)"}],
        }
    )
    manifest = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer_gz),
                    "size": len(layer_gz),
                }
            ],
            "annotations": labels,
        }
    )
    name = f"flowstat:{tag}"
    index = canonical(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                    "annotations": {
                        # podman and skopeo name the image from ref.name; containerd from its own key.
                        "org.opencontainers.image.ref.name": name,
                        "io.containerd.image.name": f"docker.io/library/{name}",
                    },
                }
            ],
        }
    )
    blob = lambda data: "blobs/sha256/" + hashlib.sha256(data).hexdigest()  # noqa: E731
    docker_manifest = canonical(
        [{"Config": blob(config), "RepoTags": [name], "Layers": [blob(layer_gz)]}]
    )
    layout = {
        "oci-layout": (0o644, canonical({"imageLayoutVersion": "1.0.0"})),
        "index.json": (0o644, index),
        "manifest.json": (0o644, docker_manifest),
        blob(config): (0o644, config),
        blob(manifest): (0o644, manifest),
        blob(layer_gz): (0o644, layer_gz),
    }

    base = os.path.join(args.out, f"flowstat-{version}-oci")
    # The directory: the layout as files, for `skopeo copy oci:DIR` or a registry push.
    if os.path.isdir(base):
        for dirpath, dirnames, filenames in os.walk(base, topdown=False):
            for entry in filenames:
                os.remove(os.path.join(dirpath, entry))
            for entry in dirnames:
                os.rmdir(os.path.join(dirpath, entry))
        os.rmdir(base)
    for path, (_, data) in layout.items():
        target = os.path.join(base, path)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as handle:
            handle.write(data)
    tarball = base + ".tar"
    with open(tarball + ".tmp", "wb") as handle:
        handle.write(layer_tar(layout, epoch))
    os.replace(tarball + ".tmp", tarball)
    with open(tarball, "rb") as handle:
        tar_sum = hashlib.sha256(handle.read()).hexdigest()
    with open(tarball + ".sha256", "w") as handle:
        handle.write(f"{tar_sum}  {os.path.basename(tarball)}\n")
    print(
        f"image: {name} manifest {digest(manifest)}, layer {len(layer_gz)} bytes compressed, "
        f"{len(layer)} unpacked; {len(files)} files",
        file=sys.stderr,
    )
    print(tarball)


if __name__ == "__main__":
    main()
