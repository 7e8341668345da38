// SPDX-License-Identifier: Apache-2.0

import NIOConcurrencyHelpers

/// Who runs a flow, from its socket's cgroup: the cgroup v2 path, the container and pod the
/// path names, and on Kubernetes the pod's names from the kubelet. One instance per cgroup,
/// shared by all of its flows (a flow carries a reference, not copies of the strings).
public final class Workload: Sendable {
    /// The cgroup v2 id the kernel recorded.
    public let cgroupID: UInt64
    /// Its path below the cgroup2 mount (`/system.slice/docker-<id>.scope`).
    public let cgroupPath: String
    /// Container id and pod UID parsed from the path.
    public let identity: ContainerIdentity
    /// The pod as the kubelet lists it; nil outside Kubernetes or before the kubelet answered.
    public let pod: PodMetadata?

    public init(cgroupID: UInt64, cgroupPath: String, identity: ContainerIdentity, pod: PodMetadata? = nil) {
        self.cgroupID = cgroupID
        self.cgroupPath = cgroupPath
        self.identity = identity
        self.pod = pod
    }

    /// The `container` label: the container's name in its pod when the kubelet named it, else
    /// the container id; empty outside containers.
    public var containerLabel: String {
        if let id = identity.containerID, let name = pod?.containerNames[id] { return name }
        return identity.containerID ?? ""
    }

    /// The `pod` label: the pod's name when the kubelet named it, else its UID; empty
    /// outside pods.
    public var podLabel: String { pod?.name ?? identity.podUID ?? "" }

    /// The `namespace` label: the pod's Kubernetes namespace; empty when unknown.
    public var namespaceLabel: String { pod?.namespace ?? "" }
}

/// One pod as the kubelet's `/pods` lists it: what flowstat needs of it.
public struct PodMetadata: Sendable, Hashable {
    public var uid: String
    public var name: String
    public var namespace: String
    /// Container id (64 hex digits, without the `containerd://` scheme) to container name.
    public var containerNames: [String: String]

    public init(uid: String, name: String, namespace: String, containerNames: [String: String] = [:]) {
        self.uid = uid
        self.name = name
        self.namespace = namespace
        self.containerNames = containerNames
    }
}

/// Fills in `FlowSample.workload` from `FlowSample.cgroupID`: cgroup paths from the cgroup2
/// mount (`CgroupPaths`), container and pod parsed from them, pod names from `pods` when a
/// kubelet client provides them. Runs on the scrape path, so a cgroup costs one dictionary
/// lookup once it is known; a walk of the hierarchy happens only for a new cgroup (at most
/// once a second). Thread-safe.
public final class WorkloadResolver: Sendable {
    private struct State {
        var paths: CgroupPaths
        var cache: [UInt64: Workload] = [:]
        /// The pod list the cache was built with (`PodDirectory.generation`).
        var podGeneration = 0
    }

    private let state: NIOLockedValueBox<State>
    /// Pod names, when running on Kubernetes with the kubelet client on.
    public let pods: PodDirectory?
    /// Most cgroups kept (a bound on memory; the cache restarts when it is full).
    let capacity: Int

    public convenience init(pods: PodDirectory? = nil) {
        self.init(mountPoint: CgroupPaths.cgroup2MountPoint(), pods: pods)
    }

    init(mountPoint: String?, pods: PodDirectory? = nil, capacity: Int = 65_536) {
        var paths = CgroupPaths(mountPoint: mountPoint)
        paths.capacity = capacity
        state = NIOLockedValueBox(State(paths: paths))
        self.pods = pods
        self.capacity = capacity
    }

    /// Sets `workload` of every flow whose cgroup id is known to the hierarchy.
    public func fill(_ flows: inout [FlowSample], now: UInt64 = SystemClock.monotonicNanoseconds()) {
        let directory = pods?.current
        state.withLockedValue { state in
            if let directory, directory.generation != state.podGeneration {
                state.cache.removeAll(keepingCapacity: true)
                state.podGeneration = directory.generation
            }
            for index in flows.indices {
                let id = flows[index].cgroupID
                guard id != 0 else { continue }
                if let known = state.cache[id] {
                    flows[index].workload = known
                    continue
                }
                guard let path = state.paths.path(of: id, now: now) else { continue }
                let identity = ContainerIdentity(cgroupPath: path)
                let workload = Workload(
                    cgroupID: id, cgroupPath: path, identity: identity,
                    pod: identity.podUID.flatMap { directory?.pods[$0] })
                if state.cache.count >= capacity { state.cache.removeAll(keepingCapacity: true) }
                state.cache[id] = workload
                flows[index].workload = workload
            }
        }
    }
}

/// The kubelet's pod list as flowstat keeps it: pods by UID, replaced whole by each
/// successful refresh (the last good list stays when a refresh fails).
public final class PodDirectory: Sendable {
    public struct Listing: Sendable {
        public var pods: [String: PodMetadata]
        /// Grows with every successful refresh.
        public var generation: Int
    }

    private let listing = NIOLockedValueBox(Listing(pods: [:], generation: 0))

    public init() {}

    public var current: Listing { listing.withLockedValue { $0 } }

    /// Replaces the list (a successful refresh).
    public func replace(with pods: [PodMetadata]) {
        listing.withLockedValue { listing in
            listing.pods = Dictionary(pods.map { ($0.uid, $0) }, uniquingKeysWith: { first, _ in first })
            listing.generation += 1
        }
    }
}
