// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

@Suite("IPAddress")
struct IPAddressTests {
    @Test(
        "text form: dotted quad for IPv4 and mapped, RFC 5952 for IPv6",
        arguments: [
            ("10.0.0.1", "10.0.0.1"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
            ("::ffff:192.168.1.1", "192.168.1.1"), ("::FFFF:c0a8:0101", "192.168.1.1"),
            ("::", "::"), ("::1", "::1"),
            ("2001:0db8:0000:0000:0000:0000:0000:0001", "2001:db8::1"),
            ("2001:DB8::A", "2001:db8::a"),
            ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),  // the first of two equal zero runs
            ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),  // a single zero field stays
            ("fe80:0:0:0:1:0:0:0", "fe80::1:0:0:0"),
            ("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
        ] as [(String, String)])
    func description(input: String, text: String) throws {
        let address = try #require(IPAddress(input))
        #expect(address.description == text)
        #expect(IPAddress(text) == address)  // the text form parses back
    }

    @Test("IPv4 is stored IPv4-mapped, as the kernel does")
    func ipv4IsMapped() throws {
        let address = try #require(IPAddress("192.168.1.2"))
        #expect(address.isIPv4Mapped)
        #expect(address.ipv4 == 0xC0A8_0102)
        #expect(address.bytes == [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 192, 168, 1, 2])
        #expect(address == IPAddress(ipv4: 0xC0A8_0102))
        #expect(IPAddress("2001:db8::1")?.isIPv4Mapped == false)
        #expect(IPAddress("2001:db8::1")?.ipv4 == nil)
    }

    @Test("byte initializers agree with the text initializer")
    func fromBytes() throws {
        let expected = try #require(IPAddress("2001:db8::102:304"))
        let tuple: IPAddress.Bytes = (0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4)
        #expect(IPAddress(bytes: tuple) == expected)
        #expect(IPAddress(bytes: expected.bytes) == expected)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 15)) == nil)
        #expect(IPAddress(bytes: [UInt8](repeating: 0, count: 17)) == nil)
        expected.withNetworkBytes { #expect(Array($0) == expected.bytes) }
    }

    @Test(
        "text that is not an address is rejected",
        arguments: ["", "1.2.3", "10.0.0.256", "gggg::", "[::1]", "::1%lo", " 10.0.0.1"])
    func rejectsInvalid(text: String) {
        #expect(IPAddress(text) == nil)
    }

    @Test("order is numeric: IPv6 loopback, then IPv4 (mapped), then global IPv6")
    func ordering() throws {
        let addresses = try ["2001:db8::1", "10.0.0.10", "::1", "10.0.0.2", "192.168.0.1"].map {
            try #require(IPAddress($0))
        }
        #expect(
            addresses.sorted().map(\.description) == ["::1", "10.0.0.2", "10.0.0.10", "192.168.0.1", "2001:db8::1"])
    }

    @Test("flow keys print like ss")
    func flowKeyDescription() throws {
        let key = FlowKey(
            family: .ipv6, local: try #require(IPAddress("2001:db8::1")), localPort: 443,
            remote: IPAddress(ipv4: 0x0A00_0002), remotePort: 5_000, netns: 7)
        #expect(key.description == "[2001:db8::1]:443 -> 10.0.0.2:5000 (netns 7)")
    }
}
