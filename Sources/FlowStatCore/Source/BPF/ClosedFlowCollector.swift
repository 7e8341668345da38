// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// Drains the kernel's ring buffer of closed-flow records on a thread of its own and hands
/// each batch, as samples, to `ClosedFlowAggregates`, which selects and sums them.
///
/// It runs continuously, not at scrape time, because a busy host closes tens of thousands
/// of flows a second and the ring buffer holds only so many: read at scrape time it would
/// overflow.
final class ClosedFlowCollector: Sendable {
    /// The agent pointer, shared with the source; the shim allows one ring-buffer reader.
    private struct Agent: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    private static let batchCapacity = 4_096

    private let stopping = NIOLockedValueBox(false)
    private let thread: NIOThreadPool

    init(agent: OpaquePointer, into aggregates: ClosedFlowAggregates, logger: Logger) throws {
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let shared = Agent(pointer: agent)
        thread.submit { [stopping] state in
            guard state == .active else { return }
            Self.run(agent: shared, into: aggregates, until: stopping, logger: logger)
        }
    }

    /// Ends the reading thread; returns once it has stopped touching the agent.
    func stop() {
        let alreadyStopped = stopping.withLockedValue { stopped in
            defer { stopped = true }
            return stopped
        }
        if !alreadyStopped { try? thread.syncShutdownGracefully() }
    }

    private static func run(
        agent: Agent, into aggregates: ClosedFlowAggregates, until stopping: NIOLockedValueBox<Bool>, logger: Logger
    ) {
        let records = UnsafeMutablePointer<fs_closed_flow>.allocate(capacity: batchCapacity)
        defer { records.deallocate() }
        var batch: [FlowSample] = []
        batch.reserveCapacity(batchCapacity)
        var failures = 0

        while !stopping.withLockedValue({ $0 }) {
            var count: UInt32 = 0
            var error = fs_error()
            // The kernel side submits without waking us (a wakeup per close would cost a busy
            // host dearly), so take what is there and sleep while the buffer is drained: at
            // 8 MiB, 50 ms of sleep leave room for a million closes a second.
            guard fs_agent_read_closed(agent.pointer, records, UInt32(batchCapacity), &count, 0, &error) == 0 else {
                failures += 1
                if failures == 1 || failures % 100 == 0 {
                    logger.error("reading closed flows failed (\(failures) times): \(BPFError(error))")
                }
                usleep(100_000)
                continue
            }
            if count < UInt32(batchCapacity) { usleep(50_000) }
            guard count > 0 else { continue }
            batch.removeAll(keepingCapacity: true)
            for index in 0..<Int(count) {
                if let flow = FlowSample(key: records[index].key, stats: records[index].stats) { batch.append(flow) }
            }
            aggregates.add(batch)
        }
    }
}
