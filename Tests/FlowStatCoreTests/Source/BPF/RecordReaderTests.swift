// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Foundation
import Testing

/// The C shim's reader of `iter/tcp` snapshots (`fs_read_records`), fed from a SOCK_SEQPACKET
/// socket pair: each message written comes back as exactly one read(), as each of the
/// kernel's seq_file reads does, so a test decides where reads end.
@Suite("Snapshot record reader")
struct RecordReaderTests {
    /// A record whose key says which socket it is (its local port).
    static func record(_ port: UInt16) -> fs_flow_record {
        var record = fs_flow_record()
        record.key.family = UInt16(AF_INET6)
        record.key.sport = port
        record.key.dport = 443
        record.key.netns = 4_026_531_840
        record.stats.bytes_acked = UInt64(port) * 10
        return record
    }

    final class Collected {
        var ports: [UInt16] = []
        var bytes: [UInt64] = []
        var batches = 0
    }

    /// What the reader delivers when the kernel's reads carry `reads` (ports); with `cut`,
    /// each of those reads arrives as two, split that many bytes in.
    static func read(
        _ reads: [[UInt16]], cutAt cut: Int? = nil, capacity: UInt32 = 1_000, bufferRecords: Int = 16
    ) throws -> (collected: Collected, delivered: UInt32, missed: UInt32) {
        var pair: [Int32] = [0, 0]
        try #require(socketpair(AF_UNIX, Int32(SOCK_SEQPACKET.rawValue), 0, &pair) == 0)
        defer { close(pair[0]) }
        var messages: [[UInt8]] = []
        for ports in reads {
            var bytes: [UInt8] = []
            for port in ports {
                var record = record(port)
                withUnsafeBytes(of: &record) { bytes.append(contentsOf: $0) }
            }
            if let cut, cut < bytes.count {
                messages.append(Array(bytes[..<cut]))
                messages.append(Array(bytes[cut...]))
            } else {
                messages.append(bytes)
            }
        }
        for message in messages {
            try #require(message.withUnsafeBytes { write(pair[1], $0.baseAddress, $0.count) } == message.count)
        }
        close(pair[1])

        let collected = Collected()
        var reader = fs_record_reader()
        reader.capacity = capacity
        reader.context = Unmanaged.passUnretained(collected).toOpaque()
        reader.sink = { context, records, count in
            let collected = Unmanaged<Collected>.fromOpaque(context!).takeUnretainedValue()
            collected.batches += 1
            for record in UnsafeBufferPointer(start: records, count: Int(count)) {
                collected.ports.append(record.key.sport)
                collected.bytes.append(record.stats.bytes_acked)
            }
        }
        let bytes = bufferRecords * MemoryLayout<fs_flow_record>.size
        let buffer = UnsafeMutablePointer<UInt8>.allocate(capacity: bytes)
        defer { buffer.deallocate() }
        try #require(fs_read_records(pair[0], buffer, bytes, &reader) == 0)
        return (collected, reader.delivered, reader.missed)
    }

    @Test("every record of every read is delivered once, in order, a batch per read")
    func plainReads() throws {
        let result = try Self.read([[1, 2, 3], [4, 5], [6]])
        #expect(result.collected.ports == [1, 2, 3, 4, 5, 6])
        #expect(result.collected.bytes == [10, 20, 30, 40, 50, 60])
        #expect(result.collected.batches == 3)
        #expect(result.delivered == 6 && result.missed == 0)
    }

    @Test("a record cut across two reads is joined, not dropped or garbled")
    func cutRecords() throws {
        // Cut each read 100 bytes into its second record.
        let cut = MemoryLayout<fs_flow_record>.size + 100
        let result = try Self.read([[1, 2, 3], [4, 5, 6]], cutAt: cut)
        #expect(result.collected.ports == [1, 2, 3, 4, 5, 6])
        #expect(result.collected.bytes == [10, 20, 30, 40, 50, 60])
    }

    @Test("records at the start of a read that repeat the previous read's last ones are dropped")
    func repeatsAtAReadsStart() throws {
        // One socket added to the bucket between reads: the last one shows again.
        #expect(try Self.read([[1, 2, 3], [3, 4, 5]]).collected.ports == [1, 2, 3, 4, 5])
        // Two added: the last two show again.
        #expect(try Self.read([[1, 2, 3], [2, 3, 4]]).collected.ports == [1, 2, 3, 4])
        // A read that is all repeats delivers nothing, and the next read is judged against it.
        #expect(try Self.read([[1, 2], [2], [2, 3]]).collected.ports == [1, 2, 3])
    }

    @Test("only a read's leading repeats are dropped; a first read and distinct records are kept")
    func onlyLeadingRepeats() throws {
        #expect(try Self.read([[1, 1]]).collected.ports == [1, 1])
        #expect(try Self.read([[1, 2], [4, 2]]).collected.ports == [1, 2, 4, 2])
        // Repeats of a record from further back than the previous read's last eight are kept.
        let long = Array(UInt16(1)...UInt16(12))
        #expect(try Self.read([long, [1, 13]], bufferRecords: 16).collected.ports == long + [1, 13])
    }

    @Test("past the capacity records count as missed, not delivered")
    func capacity() throws {
        let result = try Self.read([[1, 2, 3], [4, 5]], capacity: 4)
        #expect(result.collected.ports == [1, 2, 3, 4])
        #expect(result.delivered == 4 && result.missed == 1)
    }

    @Test("a buffer smaller than one record is refused")
    func tooSmall() {
        var reader = fs_record_reader()
        var byte: UInt8 = 0
        #expect(fs_read_records(-1, &byte, 1, &reader) == -EINVAL)
    }
}
