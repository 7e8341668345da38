// SPDX-License-Identifier: Apache-2.0

import CFlowStat
import Testing

@testable import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

/// Netlink messages as the kernel sends them for a sock_diag dump, built byte by byte from
/// the kernel's ABI (linux/netlink.h, linux/inet_diag.h, linux/tcp.h offsets), so the C
/// parser is checked against the wire format rather than against its own structs.
struct DiagMessages {
    var bytes: [UInt8] = []
    var seq: UInt32 = 7

    /// Fields of tcp_info the parser reads, at their ABI offsets.
    struct TCPInfo {
        var sndMSS: UInt32 = 1_448  // offset 16
        var rtt: UInt32 = 0  // 68
        var rttvar: UInt32 = 0  // 72
        var sndSsthresh: UInt32 = 0  // 76
        var sndCwnd: UInt32 = 0  // 80
        var totalRetrans: UInt32 = 0  // 100
        var bytesAcked: UInt64 = 0  // 120
        var bytesReceived: UInt64 = 0  // 128
        var minRTT: UInt32 = 0  // 148
        var dataSegsIn: UInt32 = 0  // 152
        var dataSegsOut: UInt32 = 0  // 156
        var deliveryRate: UInt64 = 0  // 160
        /// Bytes of tcp_info the "kernel" sends: 232 for Linux 6.1's, less for an old one.
        var length = 232

        func encoded() -> [UInt8] {
            var info = [UInt8](repeating: 0, count: 280)
            func put<T: FixedWidthInteger>(_ value: T, at offset: Int) {
                withUnsafeBytes(of: value) { info.replaceSubrange(offset..<offset + $0.count, with: $0) }
            }
            put(sndMSS, at: 16)
            put(rtt, at: 68)
            put(rttvar, at: 72)
            put(sndSsthresh, at: 76)
            put(sndCwnd, at: 80)
            put(totalRetrans, at: 100)
            put(bytesAcked, at: 120)
            put(bytesReceived, at: 128)
            put(minRTT, at: 148)
            put(dataSegsIn, at: 152)
            put(dataSegsOut, at: 156)
            put(deliveryRate, at: 160)
            return Array(info.prefix(length))
        }
    }

    private mutating func header(length: Int, type: UInt16, flags: UInt16 = 2 /* NLM_F_MULTI */, seq: UInt32) {
        append(UInt32(length))
        append(type)
        append(flags)
        append(seq)
        append(UInt32(4242))
    }

    private mutating func append<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    /// One SOCK_DIAG_BY_FAMILY message: struct inet_diag_msg, then an INET_DIAG_INFO
    /// attribute (unless `info` is nil) after an unrelated attribute the parser must skip.
    mutating func socket(
        family: UInt8, state: UInt8, source: [UInt8], sourcePort: UInt16, destination: [UInt8],
        destinationPort: UInt16, info: TCPInfo?, seq: UInt32? = nil
    ) {
        let other: [UInt8] = [1, 2, 3]  // INET_DIAG_TOS-like, 3 bytes: padded to 4
        let infoBytes = info?.encoded() ?? []
        var length = 16 + 72 + 4 + 4  // header, inet_diag_msg, the other attribute padded
        if info != nil { length += 4 + (infoBytes.count + 3) / 4 * 4 }
        header(length: length, type: 20 /* SOCK_DIAG_BY_FAMILY */, seq: seq ?? self.seq)
        bytes += [family, state, 0, 0]
        append(sourcePort.bigEndian)
        append(destinationPort.bigEndian)
        bytes += source + [UInt8](repeating: 0, count: 16 - source.count)
        bytes += destination + [UInt8](repeating: 0, count: 16 - destination.count)
        append(UInt32(0))  // idiag_if
        append(UInt32(0))
        append(UInt32(0))  // idiag_cookie
        for _ in 0..<5 { append(UInt32(0)) }  // expires, rqueue, wqueue, uid, inode
        append(UInt16(4 + other.count))
        append(UInt16(5))
        bytes += other
        pad()
        if info != nil {
            append(UInt16(4 + infoBytes.count))
            append(UInt16(2 /* INET_DIAG_INFO */))
            bytes += infoBytes
            pad()
        }
    }

    mutating func done(status: Int32 = 0) {
        header(length: 20, type: 3 /* NLMSG_DONE */, seq: seq)
        append(status)
    }

    mutating func error(_ code: Int32) {
        header(length: 16 + 20, type: 2 /* NLMSG_ERROR */, flags: 0, seq: seq)
        append(code)
        bytes += [UInt8](repeating: 0, count: 16)  // the request's header, echoed
    }
}

/// Parses `messages` with the C parser into a buffer of `capacity` records.
private func parse(_ messages: DiagMessages, capacity: Int = 16, netns: UInt32 = 4_026_531_993)
    -> (status: Int32, count: Int, keys: [fs_flow_key], stats: [fs_flow_stats])
{
    var keys = [fs_flow_key](repeating: fs_flow_key(), count: capacity)
    var stats = [fs_flow_stats](repeating: fs_flow_stats(), count: capacity)
    var count: UInt32 = 0
    let status = keys.withUnsafeMutableBufferPointer { keyBuffer in
        stats.withUnsafeMutableBufferPointer { statBuffer in
            var out = fs_flow_buffer(
                keys: keyBuffer.baseAddress, values: statBuffer.baseAddress,
                capacity: UInt32(capacity), count: 0)
            defer { count = out.count }
            return messages.bytes.withUnsafeBytes {
                fs_diag_parse($0.baseAddress, $0.count, messages.seq, netns, 123_456, &out)
            }
        }
    }
    let stored = min(Int(count), capacity)
    return (status, Int(count), Array(keys.prefix(stored)), Array(stats.prefix(stored)))
}

@Suite("inet_diag message parsing")
struct InetDiagParsingTests {
    static let v4a: [UInt8] = [10, 0, 0, 1], v4b: [UInt8] = [10, 0, 0, 2]
    static let v6a: [UInt8] = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
    static let v6b: [UInt8] = [0xFD, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]

    static var busyInfo: DiagMessages.TCPInfo {
        var info = DiagMessages.TCPInfo()
        info.rtt = 1_500
        info.rttvar = 250
        info.minRTT = 900
        info.sndCwnd = 42
        info.sndSsthresh = 21
        info.totalRetrans = 3
        info.bytesAcked = 123_456_789_012
        info.bytesReceived = 5
        info.dataSegsIn = 7
        info.dataSegsOut = 9
        info.deliveryRate = 12_345_678
        return info
    }

    @Test("an IPv4 and an IPv6 flow become the BPF map's records and decode to the same FlowSample values")
    func flowsOfBothFamilies() throws {
        var messages = DiagMessages()
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 443, destination: Self.v4b,
            destinationPort: 51_234, info: Self.busyInfo)
        messages.socket(
            family: 10, state: 4 /* FIN_WAIT1 */, source: Self.v6a, sourcePort: 80,
            destination: Self.v6b, destinationPort: 9, info: DiagMessages.TCPInfo())
        messages.done()
        let result = parse(messages)
        #expect(result.status == 1, "NLMSG_DONE ends the dump")
        #expect(result.count == 2)

        let v4 = try #require(FlowSample(key: result.keys[0], stats: result.stats[0]))
        #expect(v4.key.family == .ipv4)
        #expect(v4.key.local.description == "10.0.0.1" && v4.key.localPort == 443)
        #expect(v4.key.remote.description == "10.0.0.2" && v4.key.remotePort == 51_234)
        #expect(v4.key.netns == 4_026_531_993)
        // Stored IPv4-mapped, as the BPF program stores it.
        #expect(
            withUnsafeBytes(of: result.keys[0].saddr) { Array($0) }
                == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 10, 0, 0, 1])
        #expect(v4.rtt == 0.0015 && v4.rttVariance == 0.00025 && v4.minRTT == 0.0009)
        #expect(v4.cwnd == 42 && v4.ssthresh == 21 && v4.retransmits == 3)
        #expect(v4.bytesAcked == 123_456_789_012 && v4.bytesReceived == 5)
        #expect(v4.dataSegmentsIn == 7 && v4.dataSegmentsOut == 9)
        #expect(abs(v4.deliveryRate - 12_345_678) <= 1.5, "delivery rate \(v4.deliveryRate)")
        #expect(v4.state == 1 && v4.pid == 0 && v4.comm.isEmpty)
        #expect(result.stats[0].direction == UInt8(FS_DIR_UNKNOWN.rawValue) && result.stats[0].seen_by == 0)
        #expect(result.stats[0].first_seen_ns == 123_456 && result.stats[0].last_update_ns == 123_456)

        let v6 = try #require(FlowSample(key: result.keys[1], stats: result.stats[1]))
        #expect(v6.key.family == .ipv6 && v6.key.local.description == "fd00::1" && v6.key.remotePort == 9)
        #expect(v6.state == 4)
    }

    @Test(
        "delivery rates from bytes to tens of GB/s survive the rate_delivered/interval/MSS encoding",
        arguments: [UInt64(1), 999, 1_000_000, 4_294_967_295, 12_000_000_000, 300_000_000_000])
    func deliveryRates(rate: UInt64) throws {
        var messages = DiagMessages()
        var info = DiagMessages.TCPInfo()
        info.deliveryRate = rate
        info.sndMSS = 65_483  // loopback
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 1, destination: Self.v4b,
            destinationPort: 2, info: info)
        let result = parse(messages)
        let sample = try #require(FlowSample(key: result.keys[0], stats: result.stats[0]))
        #expect(result.stats[0].mss_cache == 65_483)
        #expect(
            abs(sample.deliveryRate - Double(rate)) <= max(Double(rate) * 1e-6, 66),
            "\(rate) came back as \(sample.deliveryRate)")
    }

    @Test("listeners, sockets without tcp_info and other sequence numbers are skipped")
    func skipped() {
        var messages = DiagMessages()
        messages.socket(
            family: 2, state: 10 /* LISTEN */, source: Self.v4a, sourcePort: 80, destination: [0, 0, 0, 0],
            destinationPort: 0, info: DiagMessages.TCPInfo())
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 81, destination: Self.v4b,
            destinationPort: 2, info: nil)
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 82, destination: Self.v4b,
            destinationPort: 2, info: DiagMessages.TCPInfo(), seq: 99)
        messages.socket(
            family: 2, state: 6 /* TIME_WAIT */, source: Self.v4a, sourcePort: 83,
            destination: Self.v4b, destinationPort: 2, info: DiagMessages.TCPInfo())
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 84, destination: Self.v4b,
            destinationPort: 2, info: DiagMessages.TCPInfo())
        let result = parse(messages)
        #expect(result.status == 0, "no DONE yet: more messages are due")
        #expect(result.keys.map(\.sport) == [84])
    }

    @Test("an older kernel's shorter tcp_info fills what it has and leaves the rest 0")
    func shortTCPInfo() throws {
        var info = Self.busyInfo
        info.length = 104  // Linux 3.x: up to tcpi_total_retrans
        var messages = DiagMessages()
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 1, destination: Self.v4b,
            destinationPort: 2, info: info)
        let result = parse(messages)
        let sample = try #require(FlowSample(key: result.keys[0], stats: result.stats[0]))
        #expect(sample.rtt == 0.0015 && sample.cwnd == 42 && sample.retransmits == 3)
        #expect(sample.bytesAcked == 0 && sample.minRTT == 0 && sample.deliveryRate == 0)
    }

    @Test("NLMSG_ERROR and a DONE carrying an error end the dump with that errno")
    func errors() {
        var failed = DiagMessages()
        failed.error(-EPERM)
        #expect(parse(failed).status == -EPERM)
        var ack = DiagMessages()
        ack.error(0)
        ack.done()
        #expect(parse(ack).status == 1, "an error message with code 0 is an acknowledgement")
        var interrupted = DiagMessages()
        interrupted.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 1, destination: Self.v4b,
            destinationPort: 2, info: DiagMessages.TCPInfo())
        interrupted.done(status: -EINTR)
        #expect(parse(interrupted).status == -EINTR)
    }

    @Test("a message cut short, or shorter than its inet_diag_msg, is rejected, not read past")
    func malformed() {
        var messages = DiagMessages()
        messages.socket(
            family: 2, state: 1, source: Self.v4a, sourcePort: 1, destination: Self.v4b,
            destinationPort: 2, info: DiagMessages.TCPInfo())
        var cut = messages
        cut.bytes.removeLast(10)
        #expect(parse(cut).status == -EBADMSG)
        var short = DiagMessages()
        short.bytes = Array(messages.bytes.prefix(16 + 40))
        short.bytes.replaceSubrange(0..<4, with: withUnsafeBytes(of: UInt32(16 + 40)) { Array($0) })
        #expect(parse(short).status == -EBADMSG)
    }

    @Test("past capacity flows are counted, not stored, so the caller knows how much to allocate")
    func capacity() {
        var messages = DiagMessages()
        for port in 1...5 {
            messages.socket(
                family: 2, state: 1, source: Self.v4a, sourcePort: UInt16(port), destination: Self.v4b,
                destinationPort: 2, info: DiagMessages.TCPInfo())
        }
        messages.done()
        let result = parse(messages, capacity: 2)
        #expect(result.status == 1 && result.count == 5)
        #expect(result.keys.map(\.sport) == [1, 2])
    }
}

private struct SocketError: Error {
    var errno: Int32
}

/// A TCP connection over loopback in this process: a real flow for the real dump.
private final class LoopbackFlow {
    let listener: Int32, client: Int32, server: Int32
    let clientPort: UInt16, serverPort: UInt16

    init(bytes: Int) throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try withUnsafeMutablePointer(to: &address) {
            try $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                guard bind(listener, pointer, length) == 0, listen(listener, 8) == 0,
                    getsockname(listener, pointer, &length) == 0,
                    connect(client, pointer, length) == 0
                else { throw SocketError(errno: errno) }
            }
        }
        let server = accept(listener, nil, nil)
        var local = sockaddr_in()
        withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { _ = getsockname(client, $0, &length) }
        }
        self.listener = listener
        self.client = client
        self.server = server
        serverPort = UInt16(bigEndian: address.sin_port)
        clientPort = UInt16(bigEndian: local.sin_port)
        // Send, and read it all on the other end, so the flow carries data and then idles.
        let payload = [UInt8](repeating: 0x66, count: bytes)
        var sent = 0
        var received = 0
        var sink = [UInt8](repeating: 0, count: 65_536)
        while received < bytes {
            if sent < bytes {
                sent += max(
                    0,
                    payload[sent...].withUnsafeBytes {
                        Glibc.send(client, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT))
                    })
            }
            received += max(0, recv(server, &sink, sink.count, Int32(MSG_DONTWAIT)))
        }
        // Everything was sent (the server has read it all). The flow is idle once the client
        // has no segment left unacknowledged (tcpi_unacked, the kernel's packets_out): the
        // last ACK, which updates the RTT and the window, has been processed, and nothing
        // moves them afterwards.
        let deadline = ContinuousClock.now + .seconds(30)
        while clientInfo.tcpi_unacked != 0 {
            guard ContinuousClock.now < deadline else {
                throw SocketError(errno: ETIMEDOUT)  // still not acknowledged after 30 s
            }
            usleep(1_000)
        }
    }

    /// The kernel's tcp_info of the client end, as getsockopt gives it.
    var clientInfo: tcp_info {
        var info = tcp_info()
        var length = socklen_t(MemoryLayout<tcp_info>.size)
        _ = getsockopt(client, Int32(IPPROTO_TCP), TCP_INFO, &info, &length)
        return info
    }

    deinit {
        close(client)
        close(server)
        close(listener)
    }
}

@Suite("inet_diag dumps of this process's own flows (no privileges needed)")
struct InetDiagDumpTests {
    @Test("a loopback flow appears from both ends with getsockopt(TCP_INFO)'s values; the listener does not")
    func ownFlow() throws {
        let flow = try LoopbackFlow(bytes: 200_000)
        let source = try InetDiagFlowSource(namespaces: .own)
        #expect(source.info.kind == .inetDiag && source.info.reason == nil)
        let snapshot = try source.snapshot()
        let info = flow.clientInfo
        #expect(snapshot.kernelEvents == nil && snapshot.rttHistogram == nil, "no event-only data is faked")
        #expect(snapshot.mapEntries == snapshot.flows.count && snapshot.mapCapacity == 0)

        let client = try #require(
            snapshot.flows.first {
                $0.key.localPort == flow.clientPort && $0.key.remotePort == flow.serverPort
            }, "the client end is missing")
        #expect(client.key.local.description == "127.0.0.1" && client.key.family == .ipv4)
        #expect(client.key.netns == NetworkNamespaces().own)
        #expect(client.state == 1)
        #expect(client.rtt == Double(info.tcpi_rtt) / 1e6, "idle flow: the same tcp_info")
        #expect(client.cwnd == info.tcpi_snd_cwnd)
        // The kernel counts the acknowledged SYN as one byte (snd_una moves past it).
        #expect((200_000...200_001).contains(client.bytesAcked), "bytes acked \(client.bytesAcked)")
        #expect(client.dataSegmentsOut >= 1)

        let server = try #require(
            snapshot.flows.first {
                $0.key.localPort == flow.serverPort && $0.key.remotePort == flow.clientPort
            }, "the server end is missing")
        #expect((200_000...200_001).contains(server.bytesReceived), "bytes received \(server.bytesReceived)")
        #expect(
            !snapshot.flows.contains { $0.key.localPort == flow.serverPort && $0.key.remotePort == 0 },
            "listeners are not flows")
    }

    @Test("a buffer too small for the dump reports the total it needs; the source grows and keeps every flow")
    func bufferTooSmall() throws {
        let flows = try (0..<3).map { _ in try LoopbackFlow(bytes: 10) }
        let keys = UnsafeMutablePointer<fs_flow_key>.allocate(capacity: 1)
        let stats = UnsafeMutablePointer<fs_flow_stats>.allocate(capacity: 1)
        defer {
            keys.deallocate()
            stats.deallocate()
        }
        var error = fs_error()
        var out = fs_flow_buffer(keys: keys, values: stats, capacity: 1, count: 0)
        let status = fs_diag_dump(-1, 1, &out, &error)
        #expect(status == -ENOSPC)
        #expect(out.count >= 6, "three flows are six socket ends; counted \(out.count)")

        // Buffers for 2 flows: the first dump (at init) grows them, every later one fits.
        let source = try InetDiagFlowSource(namespaces: .own, initialCapacity: 2)
        for _ in 0..<2 {
            let snapshot = try source.snapshot()
            #expect(snapshot.flows.count >= 6)
            for flow in flows {
                #expect(
                    snapshot.flows.contains {
                        $0.key.localPort == flow.clientPort && $0.key.remotePort == flow.serverPort
                    })
                #expect(
                    snapshot.flows.contains {
                        $0.key.localPort == flow.serverPort && $0.key.remotePort == flow.clientPort
                    })
            }
        }
    }
}
