#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Checks an OCI image archive against the image and layout specifications, independently of
scripts/image.py: every blob's bytes hash to its name and its descriptor's size, the
media types are the OCI ones, the config's diff_ids are the uncompressed layers' hashes,
every layer entry is owned by 0:0 and dated EPOCH, entries are sorted. Unpacks the
layers into ROOTFS when given. Prints one JSON object: the manifest digest, the ref name,
the layer's file list (with modes), sizes.

Usage: oci_check.py ARCHIVE.tar EPOCH [ROOTFS]
Exits 1 with the findings on stderr when the archive breaks a rule.
"""

import gzip
import hashlib
import io
import json
import sys
import tarfile

findings = []


def check(condition, message):
    if not condition:
        findings.append(message)
    return condition


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def main():
    archive, epoch = sys.argv[1], int(sys.argv[2])
    rootfs = sys.argv[3] if len(sys.argv) > 3 else None
    with tarfile.open(archive) as outer:
        members = outer.getmembers()
        names = [m.name for m in members]
        check(names == sorted(names), "archive entries are not sorted")
        for m in members:
            check(m.uid == 0 and m.gid == 0, f"archive entry {m.name} owned by {m.uid}:{m.gid}")
            check(int(m.mtime) == epoch, f"archive entry {m.name} dated {m.mtime}, not {epoch}")
        files = {m.name: outer.extractfile(m).read() for m in members if m.isfile()}

    check(json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}, "oci-layout")
    for name, data in files.items():
        if name.startswith("blobs/sha256/"):
            check(sha(data) == "sha256:" + name.rsplit("/", 1)[1], f"{name} does not hash to its name")

    def blob(descriptor, media_type):
        check(descriptor["mediaType"] == media_type, f"media type {descriptor['mediaType']} != {media_type}")
        data = files.get("blobs/" + descriptor["digest"].replace(":", "/"))
        if check(data is not None, f"blob {descriptor['digest']} is missing"):
            check(len(data) == descriptor["size"], f"blob {descriptor['digest']} size != {descriptor['size']}")
        return data or b"{}"

    index = json.loads(files["index.json"])
    check(index["schemaVersion"] == 2, "index schemaVersion")
    check(len(index["manifests"]) == 1, "one manifest")
    entry = index["manifests"][0]
    manifest = json.loads(blob(entry, "application/vnd.oci.image.manifest.v1+json"))
    config = json.loads(blob(manifest["config"], "application/vnd.oci.image.config.v1+json"))
    check(config["os"] == "linux" and config["rootfs"]["type"] == "layers", "config os/rootfs")
    check(len(config["rootfs"]["diff_ids"]) == len(manifest["layers"]), "one diff_id per layer")
    listing = {}
    for descriptor, diff_id in zip(manifest["layers"], config["rootfs"]["diff_ids"]):
        layer = gzip.decompress(blob(descriptor, "application/vnd.oci.image.layer.v1.tar+gzip"))
        check(sha(layer) == diff_id, f"layer {descriptor['digest']}: diff_id {diff_id} != {sha(layer)}")
        with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
            members = tar.getmembers()
            names = [m.name for m in members]
            check(names == sorted(names), "layer entries are not sorted")
            for m in members:
                check(m.uid == 0 and m.gid == 0, f"layer entry {m.name} owned by {m.uid}:{m.gid}")
                check(int(m.mtime) == epoch, f"layer entry {m.name} dated {m.mtime}")
                check(not m.name.startswith("/") and ".." not in m.name.split("/"), f"unsafe path {m.name}")
                listing[m.name] = {"mode": oct(m.mode), "type": "dir" if m.isdir() else "file", "size": m.size}
            if rootfs:
                tar.extractall(rootfs, filter="tar") if hasattr(tarfile, "data_filter") else tar.extractall(rootfs)
    if "manifest.json" in files:
        docker = json.loads(files["manifest.json"])
        check(docker[0]["Config"] == "blobs/" + manifest["config"]["digest"].replace(":", "/"), "manifest.json Config")
    print(
        json.dumps(
            {
                "manifest_digest": entry["digest"],
                "ref_name": entry.get("annotations", {}).get("org.opencontainers.image.ref.name"),
                "entrypoint": config["config"].get("Entrypoint"),
                "layer_compressed_bytes": sum(d["size"] for d in manifest["layers"]),
                "files": listing,
            },
            sort_keys=True,
        )
    )
    if findings:
        print("\n".join(findings), file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
