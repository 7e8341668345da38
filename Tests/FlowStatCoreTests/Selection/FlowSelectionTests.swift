// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Synchronization
import Testing

@Suite("FlowSelection")
struct FlowSelectionTests {
    static func flow(
        _ local: String = "10.0.0.1", _ localPort: UInt16 = 40_000, _ remote: String = "10.9.9.9",
        _ remotePort: UInt16 = 443, pid: UInt32 = 0, comm: String = ""
    ) -> FlowSample {
        let family: AddressFamily = local.contains(":") && !local.hasPrefix("::ffff:") ? .ipv6 : .ipv4
        return FlowSample(
            key: FlowKey(
                family: local.hasPrefix("::ffff:") ? .ipv6 : family, local: IPAddress(local)!, localPort: localPort,
                remote: IPAddress(remote)!, remotePort: remotePort, netns: 1),
            pid: pid, comm: comm)
    }

    static func network(_ text: String) -> IPNetwork { try! IPNetwork(parsing: text) }

    /// Executables of the fake processes: pid 7 runs /usr/bin/python3.11 under comm "worker".
    static let executables: @Sendable (UInt32) -> String? = { pid in pid == 7 ? "python3.11" : nil }

    static func selects(_ selection: FlowSelection, _ sample: FlowSample) -> Bool {
        FlowFilter(selection: selection, executableName: executables).matcher().selects(sample)
    }

    @Test(
        "each rule alone",
        arguments: [
            // (what, selection, flow, selected)
            ("empty selection takes all", FlowSelection(), flow(), true),
            ("pid match", FlowSelection(pids: [42]), flow(pid: 42), true),
            ("pid mismatch", FlowSelection(pids: [42]), flow(pid: 43), false),
            ("unknown process never matches", FlowSelection(pids: [42]), flow(), false),
            ("cmd matches comm", FlowSelection(cmds: ["nginx"]), flow(pid: 5, comm: "nginx"), true),
            ("cmd is not a prefix match", FlowSelection(cmds: ["ngin"]), flow(pid: 5, comm: "nginx"), false),
            (
                "cmd longer than 15 bytes matches the kernel's truncated comm",
                FlowSelection(cmds: ["very-long-daemon-name"]), flow(pid: 5, comm: "very-long-daemo"), true
            ),
            (
                "cmd matches the executable basename", FlowSelection(cmds: ["python3.11"]),
                flow(pid: 7, comm: "worker"), true
            ),
            ("cmd matches neither", FlowSelection(cmds: ["python3.11"]), flow(pid: 8, comm: "worker"), false),
            ("address v4", FlowSelection(addresses: [IPAddress("10.9.9.9")!]), flow(), true),
            ("address v4 mismatch", FlowSelection(addresses: [IPAddress("10.9.9.8")!]), flow(), false),
            (
                "address v6", FlowSelection(addresses: [IPAddress("2001:db8::9")!]),
                flow("2001:db8::1", 1, "2001:db8::9"), true
            ),
            (
                "address v4 matches a mapped peer on an IPv6 socket",
                FlowSelection(addresses: [IPAddress("10.9.9.9")!]), flow("::ffff:10.0.0.1", 1, "::ffff:10.9.9.9"), true
            ),
            ("local address is not the peer", FlowSelection(addresses: [IPAddress("10.0.0.1")!]), flow(), false),
            ("network v4", FlowSelection(networks: [network("10.0.0.0/8")]), flow(), true),
            ("network v4, not a string prefix", FlowSelection(networks: [network("10.9.9.96/28")]), flow(), false),
            ("network v4 /0 takes every IPv4 peer", FlowSelection(networks: [network("0.0.0.0/0")]), flow(), true),
            (
                "network v4 /0 not an IPv6 peer", FlowSelection(networks: [network("0.0.0.0/0")]),
                flow("2001:db8::1", 1, "2001:db8::9"), false
            ),
            (
                "network v4 matches a mapped peer", FlowSelection(networks: [network("10.8.0.0/15")]),
                flow("::ffff:10.0.0.1", 1, "::ffff:10.9.9.9"), true
            ),
            (
                "network v6", FlowSelection(networks: [network("2001:db8::/32")]),
                flow("fd00::1", 1, "2001:db8:ffff::1"), true
            ),
            (
                "network v6 mismatch", FlowSelection(networks: [network("2001:db8::/33")]),
                flow("fd00::1", 1, "2001:db8:ffff::1"), false
            ),
            (
                "network v6 odd prefix", FlowSelection(networks: [network("fd00:0:0:0:8000::/65")]),
                flow("fd00::1", 1, "fd00::8000:0:0:1"), true
            ),
            (
                "network v6 odd prefix, below", FlowSelection(networks: [network("fd00:0:0:0:8000::/65")]),
                flow("fd00::1", 1, "fd00::7fff:0:0:1"), false
            ),
            ("remote port range", FlowSelection(remotePorts: [PortRange(lower: 80, upper: 443)]), flow(), true),
            ("remote port range edge", FlowSelection(remotePorts: [PortRange(lower: 443, upper: 443)]), flow(), true),
            (
                "remote port range mismatch", FlowSelection(remotePorts: [PortRange(lower: 80, upper: 442)]), flow(),
                false
            ),
            (
                "remote ranges are not local ones",
                FlowSelection(remotePorts: [PortRange(lower: 40_000, upper: 40_000)]),
                flow(), false
            ),
            ("local port range", FlowSelection(localPorts: [PortRange(lower: 40_000, upper: 40_010)]), flow(), true),
            (
                "local port range mismatch", FlowSelection(localPorts: [PortRange(lower: 443, upper: 443)]), flow(),
                false
            ),
            (
                "port 65535", FlowSelection(remotePorts: [PortRange(lower: 65_535, upper: 65_535)]),
                flow("10.0.0.1", 40_000, "10.9.9.9", 65_535), true
            ),
        ] as [(String, FlowSelection, FlowSample, Bool)])
    func rule(what: String, selection: FlowSelection, sample: FlowSample, selected: Bool) {
        #expect(Self.selects(selection, sample) == selected, "\(what)")
    }

    @Test(
        "alternatives within a group are OR, groups are AND",
        arguments: [
            // pids ∪ cmds
            (FlowSelection(pids: [1], cmds: ["nginx"]), flow(pid: 2, comm: "nginx"), true),
            (FlowSelection(pids: [1], cmds: ["nginx"]), flow(pid: 1, comm: "sshd"), true),
            (FlowSelection(pids: [1], cmds: ["nginx"]), flow(pid: 2, comm: "sshd"), false),
            // addresses ∪ networks
            (FlowSelection(addresses: [IPAddress("192.0.2.1")!], networks: [network("10.9.0.0/16")]), flow(), true),
            (FlowSelection(addresses: [IPAddress("10.9.9.9")!], networks: [network("192.0.2.0/24")]), flow(), true),
            (FlowSelection(addresses: [IPAddress("192.0.2.1")!], networks: [network("192.0.2.0/24")]), flow(), false),
            // several ranges
            (
                FlowSelection(remotePorts: [PortRange(lower: 1, upper: 10), PortRange(lower: 400, upper: 500)]), flow(),
                true
            ),
            // process AND peering AND ports
            (
                FlowSelection(
                    pids: [1], networks: [network("10.0.0.0/8")], remotePorts: [PortRange(lower: 443, upper: 443)]),
                flow(pid: 1), true
            ),
            (
                FlowSelection(
                    pids: [1], networks: [network("10.0.0.0/8")], remotePorts: [PortRange(lower: 443, upper: 443)]),
                flow(pid: 2), false
            ),
            (
                FlowSelection(
                    pids: [1], networks: [network("192.0.0.0/8")], remotePorts: [PortRange(lower: 443, upper: 443)]),
                flow(pid: 1), false
            ),
            (
                FlowSelection(
                    pids: [1], networks: [network("10.0.0.0/8")], remotePorts: [PortRange(lower: 80, upper: 80)]),
                flow(pid: 1), false
            ),
            (
                FlowSelection(
                    remotePorts: [PortRange(lower: 443, upper: 443)], localPorts: [PortRange(lower: 1, upper: 2)]),
                flow(), false
            ),
            (
                FlowSelection(
                    remotePorts: [PortRange(lower: 443, upper: 443)],
                    localPorts: [PortRange(lower: 40_000, upper: 40_000)]),
                flow(), true
            ),
        ] as [(FlowSelection, FlowSample, Bool)])
    func combination(selection: FlowSelection, sample: FlowSample, selected: Bool) {
        #expect(Self.selects(selection, sample) == selected)
    }

    @Test("hosts are resolved with getaddrinfo: localhost selects loopback peers")
    func hosts() {
        let filter = FlowFilter(selection: FlowSelection(hosts: ["localhost"]))
        // Before the first resolution the host has no addresses: nothing matches it.
        #expect(!filter.matcher().selects(Self.flow("127.0.0.1", 1, "127.0.0.1", 80)))
        filter.resolver?.resolveNow()
        #expect(filter.resolver?.addresses.contains(IPAddress("127.0.0.1")!) == true)
        #expect(filter.matcher().selects(Self.flow("127.0.0.1", 1, "127.0.0.1", 80)))
        #expect(!filter.matcher().selects(Self.flow("127.0.0.1", 1, "127.0.0.2", 80)))
    }

    @Test("a host that fails to resolve is not fatal and keeps its last addresses")
    func hostFailure() {
        let resolver = HostResolver(hosts: ["localhost", "no-such-host.invalid"])
        resolver.resolveNow()
        #expect(resolver.addresses.contains(IPAddress("127.0.0.1")!))
        let filter = FlowFilter(selection: FlowSelection(hosts: resolver.hosts), resolver: resolver)
        #expect(filter.matcher().selects(Self.flow("127.0.0.1", 1, "127.0.0.1", 80)))
    }

    @Test("a resolution that fails keeps the host's last good addresses")
    func lastGoodAddresses() {
        let answers = LockedAnswers([
            .success([IPAddress("192.0.2.7")!]), .failure(HostResolver.ResolveError(message: "SERVFAIL")),
            .success([IPAddress("192.0.2.8")!]),
        ])
        let resolver = HostResolver(hosts: ["db.example"], lookup: { _ in answers.next() })
        resolver.resolveNow()
        #expect(resolver.addresses == [IPAddress("192.0.2.7")!])
        resolver.resolveNow()
        #expect(resolver.addresses == [IPAddress("192.0.2.7")!])
        resolver.resolveNow()
        #expect(resolver.addresses == [IPAddress("192.0.2.8")!])
    }

    @Test("apply keeps the selected flows in order, and everything without a selection")
    func apply() {
        let flows = [Self.flow(pid: 1), Self.flow(pid: 2), Self.flow(pid: 1, comm: "x")]
        let filter = FlowFilter(selection: FlowSelection(pids: [1]))
        #expect(filter.apply(to: flows).map(\.comm) == ["", "x"])
        #expect(FlowFilter(selection: FlowSelection()).apply(to: flows).count == 3)
    }

    @Test("the executable basename of a real process")
    func executableOfSelf() {
        let name = FlowFilter.executableBasename(UInt32(getpid()))
        #expect(name?.isEmpty == false)
        #expect(name?.contains("/") == false)
        #expect(FlowFilter.executableBasename(0) == nil)
    }

    @Test(
        "CIDR parsing",
        arguments: [
            ("10.0.0.0/8", "10.0.0.0/8", 104), ("10.1.2.3", "10.1.2.3/32", 128), ("fd00::/8", "fd00::/8", 8),
            ("::/0", "::/0", 0), ("2001:db8::1", "2001:db8::1/128", 128), ("0.0.0.0/0", "0.0.0.0/0", 96),
        ] as [(String, String, Int)])
    func cidr(text: String, description: String, prefix: Int) throws {
        let network = try IPNetwork(parsing: text)
        #expect(network.description == description)
        #expect(network.prefixLength == prefix)
    }

    @Test("refused CIDRs", arguments: ["10.0.0.0/", "10.0.0.0/-1", "fd00::/129", "x/8", "10.1.0.0/8", "10.0.0.0/8/8"])
    func badCIDR(text: String) {
        #expect(throws: IPNetwork.ParseError.self) { try IPNetwork(parsing: text) }
    }
}

/// Hands out canned lookup results in order.
final class LockedAnswers: Sendable {
    private let answers: Mutex<[Result<Set<IPAddress>, HostResolver.ResolveError>]>
    init(_ answers: [Result<Set<IPAddress>, HostResolver.ResolveError>]) { self.answers = Mutex(answers) }
    func next() -> Result<Set<IPAddress>, HostResolver.ResolveError> { answers.withLock { $0.removeFirst() } }
}

#if canImport(Glibc)
import Glibc
#endif
