// SPDX-License-Identifier: Apache-2.0

import Foundation

/// Cgroup v2 directories a test makes under the unified mount: `leaves` (paths from the
/// mount's root, each under `base`) with every directory between them and `base`.
/// `remove()` takes them away deepest first, each once its processes have gone.
struct TestCgroups {
    let mount: String
    let base: String
    let leaves: [String]

    init(mount: String, base: String, leaves: [String]) throws {
        self.mount = mount
        self.base = base
        self.leaves = leaves
        for leaf in leaves {
            try FileManager.default.createDirectory(atPath: mount + leaf, withIntermediateDirectories: true)
        }
    }

    func remove() {
        for leaf in leaves {
            var path = leaf
            while path.hasPrefix(base) {
                // A cgroup with processes left is busy until they exit; one with children stays.
                _ = waitUntil(seconds: 5) { rmdir(mount + path) == 0 || errno == ENOENT || errno == ENOTEMPTY }
                path = (path as NSString).deletingLastPathComponent
            }
        }
        rmdir(mount + base)
    }
}
