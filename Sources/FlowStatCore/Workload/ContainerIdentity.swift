// SPDX-License-Identifier: Apache-2.0

/// The container and Kubernetes pod a cgroup v2 path belongs to, as the container runtimes
/// name their cgroups.
///
/// Recognised layouts (the path is relative to the cgroup2 mount):
/// - containerd/CRI, systemd driver:
///   `/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid_>.slice/cri-containerd-<id>.scope`
/// - containerd/CRI, cgroupfs driver: `/kubepods/burstable/pod<uid>/<id>`
/// - CRI-O: `…/kubepods-besteffort-pod<uid_>.slice/crio-<id>.scope`, cgroupfs `…/pod<uid>/crio-<id>`
///   (`crio-conmon-<id>.scope` is CRI-O's monitor process, not the container: pod only)
/// - Docker: `/system.slice/docker-<id>.scope`, cgroupfs `/docker/<id>`
/// - Podman: `/machine.slice/libpod-<id>.scope` (and its `container` child), rootless
///   `/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-<id>.scope`, cgroupfs
///   `/libpod_parent/libpod-<id>` (`libpod-conmon-<id>.scope` is the monitor: no container)
///
/// The systemd driver writes a pod UID's dashes as underscores; `podUID` has the dashes back,
/// as the API server spells it. A container id is the runtime's 64 hex digits. Processes in
/// a cgroup below the container's (a nested cgroup namespace) belong to that container.
/// Not for cgroup v1 paths, and not a check that the container still exists.
public struct ContainerIdentity: Sendable, Hashable {
    /// The runtime that named the cgroup.
    public enum Runtime: String, Sendable, Hashable {
        case containerd, crio, docker, podman
        /// A bare 64-hex-digit cgroup under a pod (the cgroupfs driver of containerd, or of
        /// cri-dockerd: the path alone does not tell which).
        case cri
    }

    /// The container id (64 lowercase hex digits); nil outside a container.
    public var containerID: String?
    /// The pod's UID (`0b3c1f4e-8a8f-4c4b-9d4e-2f6c1b0a9e11`); nil outside a Kubernetes pod.
    public var podUID: String?
    /// Who named it; nil when there is no container.
    public var runtime: Runtime?

    public init(containerID: String? = nil, podUID: String? = nil, runtime: Runtime? = nil) {
        self.containerID = containerID
        self.podUID = podUID
        self.runtime = runtime
    }

    /// Whether the path is in neither a container nor a pod.
    public var isEmpty: Bool { containerID == nil && podUID == nil }

    /// Parses a cgroup path (`/kubepods.slice/…`); components that fit no layout are ignored.
    public init(cgroupPath path: String) {
        self.init()
        let components = path.split(separator: "/")
        for (position, component) in components.enumerated() {
            // containerd's systemd driver when nothing turned the cgroupsPath into a scope
            // (k3s, kind): `kubepods-burstable-pod<uid_>.slice:cri-containerd:<id>`.
            let parts = component.split(separator: ":", omittingEmptySubsequences: false)
            if parts.count == 3, let uid = Self.podUID(in: parts[0]) {
                podUID = uid
                if containerID == nil, let (id, runtime) = Self.container(in: Substring(parts[1] + "-" + parts[2])) {
                    containerID = id
                    self.runtime = runtime
                }
                continue
            }
            if let uid = Self.podUID(in: component) {
                podUID = uid
                continue
            }
            // The outermost container wins: a nested cgroup below it is the same container.
            guard containerID == nil else { continue }
            if let (id, runtime) = Self.container(in: component) {
                containerID = id
                self.runtime = runtime
            } else if Self.isContainerID(component) {
                let parent = position > 0 ? components[position - 1] : ""
                if parent == "docker" {
                    containerID = String(component)
                    runtime = .docker
                } else if podUID != nil {
                    containerID = String(component)
                    runtime = .cri
                }
            }
        }
    }

    private static let prefixes: [(prefix: String, runtime: Runtime)] = [
        ("cri-containerd-", .containerd), ("crio-", .crio), ("cri-o-", .crio), ("docker-", .docker),
        ("libpod-", .podman),
    ]

    /// `cri-containerd-<id>.scope`, `crio-<id>`, `docker-<id>.scope`, `libpod-<id>.scope`, …
    private static func container(in component: Substring) -> (String, Runtime)? {
        var name = component
        if name.hasSuffix(".scope") { name = name.dropLast(".scope".count) }
        for (prefix, runtime) in prefixes where name.hasPrefix(prefix) {
            let id = name.dropFirst(prefix.count)
            // crio-conmon-<id>, libpod-conmon-<id>: the runtime's monitor, not the container.
            return isContainerID(id) ? (String(id), runtime) : nil
        }
        return nil
    }

    /// `pod<uid>` (cgroupfs) or `kubepods[-<qos>]-pod<uid_>.slice` (systemd).
    private static func podUID(in component: Substring) -> String? {
        var name = component
        if name.hasPrefix("kubepods"), name.hasSuffix(".slice") {
            name = name.dropLast(".slice".count)
            guard let range = name.firstRange(of: "-pod") else { return nil }
            name = name[range.upperBound...]
        } else if name.hasPrefix("pod") {
            name = name.dropFirst(3)
        } else {
            return nil
        }
        let uid = String(name.map { $0 == "_" ? "-" : $0 }).lowercased()
        return isPodUID(uid) ? uid : nil
    }

    /// 64 hex digits.
    static func isContainerID(_ text: Substring) -> Bool {
        text.utf8.count == 64 && text.utf8.allSatisfy(isHexDigit)
    }

    /// A UID as the API server makes it (8-4-4-4-12 hex digits), or a static pod's: the
    /// kubelet names those by 32 hex digits of a hash.
    static func isPodUID(_ text: String) -> Bool {
        let groups = text.split(separator: "-", omittingEmptySubsequences: false)
        if groups.count == 1 { return text.utf8.count == 32 && text.utf8.allSatisfy(isHexDigit) }
        return groups.map(\.utf8.count) == [8, 4, 4, 4, 12] && groups.allSatisfy { $0.utf8.allSatisfy(isHexDigit) }
    }

    private static func isHexDigit(_ byte: UInt8) -> Bool {
        (byte >= 0x30 && byte <= 0x39) || (byte >= 0x61 && byte <= 0x66) || (byte >= 0x41 && byte <= 0x46)
    }
}
