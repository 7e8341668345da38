// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Glibc

/// How the agent's heap gives memory back between scrapes.
///
/// Each scrape allocates a few arrays of several MiB (the snapshot's flows, the sort order)
/// and frees them when the response is sent. glibc's default raises its mmap threshold to
/// the size of the largest block freed, so from the second scrape on those arrays come from
/// the heap, and the heap keeps the freed pages: at 40,000 flows the agent then sat at about
/// 79 MiB between scrapes instead of 48 (`scripts/bench.py`). A fixed threshold keeps them
/// mapped per scrape, returned to the kernel when freed, at the cost of their page faults.
public enum MemoryReturn {
    /// Blocks this large or larger are mapped on their own and unmapped when freed.
    public static let mmapThreshold: Int32 = 1 << 20

    /// Fixes glibc's mmap threshold, unless the operator set one (`MALLOC_MMAP_THRESHOLD_`),
    /// which then stays in force. Call once at start-up, before the first scrape.
    public static func returnLargeBlocks() {
        guard getenv("MALLOC_MMAP_THRESHOLD_") == nil else { return }
        _ = fs_set_mmap_threshold(mmapThreshold)
    }
}
