// SPDX-License-Identifier: Apache-2.0

import Yams

/// The kubelet's pod list (`GET https://NODE:10250/pods`, a `v1.PodList`) read into what
/// flowstat needs of each pod: UID, name, namespace, and container id → container name for
/// every container, init and ephemeral ones included.
///
/// Read with Yams (JSON is YAML) rather than Foundation, which the library does not link.
/// Container ids come as `containerd://<id>`, `cri-o://<id>` or `docker://<id>`: the scheme
/// is dropped, leaving the id the cgroup path carries. Pods without a UID are skipped.
public enum PodList {
    public struct Invalid: Error, CustomStringConvertible {
        public var description: String
    }

    public static func parse(_ text: String) throws -> [PodMetadata] {
        let document: Any?
        do {
            document = try Yams.load(yaml: text)
        } catch {
            throw Invalid(description: "the pod list is not JSON: \(error)")
        }
        guard let root = document as? [String: Any], let items = root["items"] as? [Any] else {
            throw Invalid(description: "the pod list has no items")
        }
        return items.compactMap { item in
            guard let pod = item as? [String: Any], let metadata = pod["metadata"] as? [String: Any],
                let uid = metadata["uid"] as? String, !uid.isEmpty
            else { return nil }
            var containers: [String: String] = [:]
            let status = pod["status"] as? [String: Any] ?? [:]
            for key in ["containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"] {
                for case let container as [String: Any] in status[key] as? [Any] ?? [] {
                    guard let name = container["name"] as? String, let id = container["containerID"] as? String
                    else { continue }
                    let bare = id.split(separator: "/", omittingEmptySubsequences: true).last.map(String.init) ?? id
                    containers[bare] = name
                }
            }
            return PodMetadata(
                uid: uid, name: metadata["name"] as? String ?? "", namespace: metadata["namespace"] as? String ?? "",
                containerNames: containers)
        }
    }
}
