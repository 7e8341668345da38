// SPDX-License-Identifier: Apache-2.0

import Testing

@testable import FlowStatCore

#if canImport(Glibc)
import Glibc
#endif

@Suite("Process attribution from /proc")
struct ProcessAttributionTests {
    static func parse(_ line: String, _ family: AddressFamily) -> (FlowKey, UInt64)? {
        let bytes = Array(line.utf8)
        return bytes.withUnsafeBufferPointer { SocketTable.parseLine($0[...], family: family, netns: 7) }
    }

    @Test("lines of /proc/net/tcp and tcp6")
    func parseLines() throws {
        let v4 = try #require(
            Self.parse(
                "   3: 0100007F:1F90 0200007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 123456 1 0000000000000000 20 4 30 10 -1",
                .ipv4))
        #expect(
            v4.0
                == FlowKey(
                    family: .ipv4, local: IPAddress("127.0.0.1")!, localPort: 8080,
                    remote: IPAddress("127.0.0.2")!, remotePort: 50_000, netns: 7))
        #expect(v4.1 == 123_456)
        // fd00::1 and an IPv4-mapped peer on an IPv6 socket.
        let v6 = try #require(
            Self.parse(
                "   0: 000000FD000000000000000001000000:01BB 0000000000000000FFFF00000300000A:D431 01 00000000:00000000 00:00000000 00000000  1000        0 42 1 0000000000000000 20 4 30 10 -1",
                .ipv6))
        #expect(
            v6.0
                == FlowKey(
                    family: .ipv6, local: IPAddress("fd00::1")!, localPort: 443,
                    remote: IPAddress("10.0.0.3")!, remotePort: 54_321, netns: 7))
        #expect(v6.1 == 42)
        // Listeners have no remote end.
        #expect(
            Self.parse(
                "   1: 00000000:07E8 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 552 1 0",
                .ipv4) == nil)
    }

    /// The kernel's name of this process, read from /proc/self/comm without its newline.
    static func procSelfComm() throws -> String {
        let fd = open("/proc/self/comm", O_RDONLY)
        try #require(fd >= 0, "open /proc/self/comm: errno \(errno)")
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &buffer, buffer.count)
        try #require(count > 0, "read /proc/self/comm: errno \(errno)")
        var bytes = buffer[..<count]
        try #require(bytes.last == UInt8(ascii: "\n"), "/proc/self/comm does not end in a newline")
        bytes.removeLast()
        return String(decoding: bytes, as: UTF8.self)
    }

    @Test("a real loopback flow of this process is attributed to it")
    func ownFlow() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(listener) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        try #require(
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) }
            } == 0)
        try #require(listen(listener, 4) == 0)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(listener, $0, &length) }
        }
        let serverPort = UInt16(bigEndian: address.sin_port)
        let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(client) }
        try #require(
            withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(client, $0, length) }
            } == 0)
        var local = sockaddr_in()
        _ = withUnsafeMutablePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client, $0, &length) }
        }
        let clientPort = UInt16(bigEndian: local.sin_port)

        var status = stat()
        try #require(stat("/proc/self/ns/net", &status) == 0)
        let netns = UInt32(truncatingIfNeeded: status.st_ino)
        let loopback = IPAddress("127.0.0.1")!
        var flows = [
            FlowSample(
                key: FlowKey(
                    family: .ipv4, local: loopback, localPort: clientPort, remote: loopback,
                    remotePort: serverPort, netns: netns)),
            // Not yet accepted: the server end has no file descriptor, so no owner yet.
            FlowSample(
                key: FlowKey(
                    family: .ipv4, local: loopback, localPort: serverPort, remote: loopback,
                    remotePort: clientPort, netns: netns)),
            // Already known from the source: left alone.
            FlowSample(
                key: FlowKey(
                    family: .ipv4, local: loopback, localPort: 1, remote: loopback,
                    remotePort: 2, netns: netns), pid: 99, comm: "other"),
        ]
        var attribution = ProcessAttribution(ownNetns: netns)
        let pass = attribution.fill(&flows, now: 1)
        #expect(pass == ProcessAttribution.Pass(flowsLookedUp: 2, flowsAttributed: 1, walkedProcFDs: true))
        #expect(flows[0].pid == UInt32(getpid()))
        // The process's name is its thread-group leader's: /proc/self/comm (this test runs on
        // some other thread, whose own name is in /proc/thread-self/comm).
        let comm = try Self.procSelfComm()
        #expect(!comm.isEmpty)
        #expect(flows[0].comm == comm)
        #expect(flows[1].pid == 0)
        #expect(flows[2].pid == 99 && flows[2].comm == "other")

        // The next pass uses the cache: no walk, even for the orphan (retried later).
        flows[0].pid = 0
        let again = attribution.fill(&flows, now: 2)
        #expect(!again.walkedProcFDs)
        #expect(flows[0].pid == UInt32(getpid()))

        // After accept(), once the retry interval has passed, the server end is found too.
        let accepted = accept(listener, nil, nil)
        defer { close(accepted) }
        let later = attribution.fill(&flows, now: 2 + 31_000_000_000)
        #expect(later.walkedProcFDs && later.flowsAttributed == 1)
        #expect(flows[1].pid == UInt32(getpid()))
        #expect(flows[1].comm == comm)
    }
}
