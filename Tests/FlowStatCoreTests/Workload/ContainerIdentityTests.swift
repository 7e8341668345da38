// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import FlowStatCore

/// Cgroup paths as the runtimes make them (shapes copied from real hosts: kubelet with the
/// systemd and cgroupfs drivers, CRI-O, Docker, rootful and rootless Podman), parsed into
/// container id and pod UID.
@Suite("Container identity from cgroup paths")
struct ContainerIdentityTests {
    static let id = "4e6f1c0b2a9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f"
    static let uid = "0b3c1f4e-8a8f-4c4b-9d4e-2f6c1b0a9e11"
    static let uidSystemd = "0b3c1f4e_8a8f_4c4b_9d4e_2f6c1b0a9e11"

    @Test(
        "each runtime's layout gives its container id, pod UID and runtime",
        arguments: [
            // containerd, systemd driver: burstable, besteffort, guaranteed (no QoS slice).
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidSystemd).slice/cri-containerd-\(id).scope",
                id, uid, ContainerIdentity.Runtime.containerd
            ),
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidSystemd).slice/cri-containerd-\(id).scope",
                id, uid, .containerd
            ),
            ("/kubepods.slice/kubepods-pod\(uidSystemd).slice/cri-containerd-\(id).scope", id, uid, .containerd),
            // containerd (or cri-dockerd), cgroupfs driver.
            ("/kubepods/burstable/pod\(uid)/\(id)", id, uid, .cri),
            ("/kubepods/pod\(uid)/\(id)", id, uid, .cri),
            // CRI-O, both drivers.
            (
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod\(uidSystemd).slice/crio-\(id).scope",
                id, uid, .crio
            ),
            ("/kubepods/besteffort/pod\(uid)/crio-\(id)", id, uid, .crio),
            // Docker, both drivers; Kubernetes through cri-dockerd, systemd driver.
            ("/system.slice/docker-\(id).scope", id, nil, .docker),
            ("/docker/\(id)", id, nil, .docker),
            (
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(uidSystemd).slice/docker-\(id).scope",
                id, uid, .docker
            ),
            // Podman: rootful, its nested "container" cgroup, rootless, cgroupfs.
            ("/machine.slice/libpod-\(id).scope", id, nil, .podman),
            ("/machine.slice/libpod-\(id).scope/container", id, nil, .podman),
            ("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-\(id).scope", id, nil, .podman),
            ("/libpod_parent/libpod-\(id)", id, nil, .podman),
            // k3s/kind put the kubepods hierarchy below the runtime's own cgroup.
            (
                "/system.slice/containerd.service/kubepods-burstable-pod\(uidSystemd).slice:cri-containerd:\(id)", id,
                uid, .containerd
            ),
        ] as [(String, String?, String?, ContainerIdentity.Runtime?)])
    func layouts(path: String, containerID: String?, podUID: String?, runtime: ContainerIdentity.Runtime?) {
        let identity = ContainerIdentity(cgroupPath: path)
        #expect(identity.containerID == containerID, "\(path)")
        #expect(identity.podUID == podUID, "\(path)")
        #expect(identity.runtime == runtime, "\(path)")
    }

    @Test(
        "paths outside containers, and runtime monitors, carry no container",
        arguments: [
            "/", "/init.scope", "/system.slice/ssh.service", "/user.slice/user-0.slice/session-3.scope",
            "/machine.slice/libpod-conmon-\(id).scope", "/system.slice/crio-conmon-\(id).scope",
            "/kubepods.slice", "/kubepods.slice/kubepods-burstable.slice",
            // A bare hex directory outside docker/ and outside a pod is nobody's container.
            "/\(id)", "/system.slice/docker-\(id.prefix(12)).scope",
        ])
    func outside(path: String) {
        #expect(ContainerIdentity(cgroupPath: path).containerID == nil, "\(path)")
    }

    @Test("a pod's own cgroup gives the pod without a container; conmon of CRI-O keeps the pod")
    func podOnly() {
        let pod = ContainerIdentity(
            cgroupPath: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(Self.uidSystemd).slice")
        #expect(pod == ContainerIdentity(podUID: Self.uid))
        let conmon = ContainerIdentity(
            cgroupPath:
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod\(Self.uidSystemd).slice/crio-conmon-\(Self.id).scope"
        )
        #expect(conmon == ContainerIdentity(podUID: Self.uid))
    }

    @Test("a static pod's UID (32 hex digits, a hash of its manifest) is a pod UID")
    func staticPod() {
        let hash = "6b1a6d5c7f0e4a3b9c8d7e6f5a4b3c2d"
        #expect(ContainerIdentity(cgroupPath: "/kubepods/burstable/pod\(hash)/\(Self.id)").podUID == hash)
        #expect(ContainerIdentity(cgroupPath: "/kubepods/burstable/podnothex/\(Self.id)").podUID == nil)
    }

    @Test("the cgroup2 mount is read from /proc/mounts, hybrid hosts and escaped paths included")
    func mountPoint() {
        let unified = """
            sysfs /sys sysfs rw,nosuid 0 0
            tmpfs /sys/fs/cgroup tmpfs ro,nosuid 0 0
            cgroup2 /sys/fs/cgroup/unified cgroup2 rw,nosuid,nodev,noexec,relatime 0 0
            cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0
            """
        #expect(CgroupPaths.cgroup2MountPoint(mounts: unified) == "/sys/fs/cgroup/unified")
        #expect(CgroupPaths.cgroup2MountPoint(mounts: "none /a\\040b cgroup2 rw 0 0\n") == "/a b")
        #expect(CgroupPaths.cgroup2MountPoint(mounts: "proc /proc proc rw 0 0\n") == nil)
    }
}
