// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Logging
import NIOConcurrencyHelpers
import NIOPosix

/// Drains the kernel's ring buffer of closed-flow records on a thread of its own and sums
/// them per aggregate key until the next snapshot takes them.
///
/// It runs continuously, not at scrape time, because a busy host closes tens of thousands
/// of flows a second and the ring buffer holds only so many: read at scrape time it would
/// overflow. Summing on arrival keeps memory bounded by the number of distinct keys, not
/// of flows.
final class ClosedFlowCollector: Sendable {
    /// The agent pointer, shared with the source; the shim allows one ring-buffer reader.
    private struct Agent: @unchecked Sendable {
        let pointer: OpaquePointer
    }

    /// Keys of one batch past this many fold into per-port keys, then into `other`: a
    /// bound for hosts that talk to very many peers between two scrapes.
    static let maxPendingKeys = 65_536
    private static let batchCapacity = 4_096

    private let pending = NIOLockedValueBox<[AggregateKey: FlowTotals]>([:])
    private let stopping = NIOLockedValueBox(false)
    private let thread: NIOThreadPool

    init(agent: OpaquePointer, servicePorts: ServicePorts, logger: Logger) throws {
        thread = NIOThreadPool(numberOfThreads: 1)
        thread.start()
        let shared = Agent(pointer: agent)
        thread.submit { [pending, stopping] state in
            guard state == .active else { return }
            Self.run(agent: shared, into: pending, until: stopping, servicePorts: servicePorts, logger: logger)
        }
    }

    /// Takes what closed since the last call.
    func drain() -> [AggregateKey: FlowTotals] {
        pending.withLockedValue { batch in
            defer { batch = [:] }
            return batch
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
        agent: Agent, into pending: NIOLockedValueBox<[AggregateKey: FlowTotals]>, until stopping: NIOLockedValueBox<Bool>,
        servicePorts: ServicePorts, logger: Logger
    ) {
        let records = UnsafeMutablePointer<fs_closed_flow>.allocate(capacity: batchCapacity)
        defer { records.deallocate() }
        var batch: [(AggregateKey, FlowTotals)] = []
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
                batch.append(Self.totals(of: records[index], servicePorts: servicePorts))
            }
            pending.withLockedValue { pending in
                for (key, totals) in batch {
                    var target = key
                    if pending[target] == nil, pending.count >= maxPendingKeys {
                        target = AggregateKey(peer: .other, port: key.port)
                        if pending[target] == nil { target = .other }
                    }
                    pending[target, default: FlowTotals()].add(totals)
                }
            }
        }
    }

    private static func totals(of record: fs_closed_flow, servicePorts: ServicePorts) -> (AggregateKey, FlowTotals) {
        let stats = record.stats
        let key = servicePorts.key(
            local: record.key.sport, remote: record.key.dport, peer: IPAddress(bytes: record.key.daddr),
            direction: FlowDirection(rawValue: stats.direction) ?? .unknown)
        let totals = FlowTotals(
            flows: 1, bytesAcked: stats.bytes_acked, bytesReceived: stats.bytes_received,
            dataSegmentsIn: UInt64(stats.data_segs_in), dataSegmentsOut: UInt64(stats.data_segs_out),
            retransmits: UInt64(stats.total_retrans))
        return (key, totals)
    }
}
