// SPDX-License-Identifier: Apache-2.0

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// An IP address exactly as the kernel stores it for a socket: 16 bytes in network order,
/// with IPv4 addresses held as IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`).
///
/// One representation for both families lets flow keys from IPv4 and IPv6 sockets share a
/// type, a hash and an order, and matches the BPF map key byte for byte. It is not a
/// general-purpose address type: it has no notion of scope ids or prefixes.
public struct IPAddress: Hashable, Comparable, Sendable {
    /// The 16 raw bytes, as the C shim hands them over (`__u8 addr[16]` imports as this tuple).
    public typealias Bytes = (
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8,
        UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8, UInt8
    )

    /// Bytes 0..<8 as a big-endian integer. Two integers instead of a tuple give cheap
    /// hashing and comparison, and comparing `(high, low)` orders addresses numerically.
    public let high: UInt64
    /// Bytes 8..<16 as a big-endian integer.
    public let low: UInt64

    /// Creates an address from its two big-endian halves.
    public init(high: UInt64, low: UInt64) {
        self.high = high
        self.low = low
    }

    /// Creates an address from 16 bytes in network order.
    public init(bytes: Bytes) {
        var copy = bytes
        let (high, low) = withUnsafeBytes(of: &copy) { raw in
            (
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 0, as: UInt64.self)),
                UInt64(bigEndian: raw.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            )
        }
        self.init(high: high, low: low)
    }

    /// Creates an address from exactly 16 bytes in network order; `nil` for any other count.
    public init?(bytes: some Collection<UInt8>) {
        guard bytes.count == 16 else { return nil }
        var high: UInt64 = 0
        var low: UInt64 = 0
        for (offset, byte) in bytes.enumerated() {
            if offset < 8 {
                high = high << 8 | UInt64(byte)
            } else {
                low = low << 8 | UInt64(byte)
            }
        }
        self.init(high: high, low: low)
    }

    /// Creates the IPv4-mapped form of an IPv4 address given in host order
    /// (`0x0A00_0001` is 10.0.0.1).
    public init(ipv4 address: UInt32) {
        self.init(high: 0, low: 0xFFFF_0000_0000 | UInt64(address))
    }

    /// Parses dotted-quad IPv4 (stored mapped) or any textual IPv6 form `inet_pton` accepts;
    /// `nil` if the text is neither.
    public init?(_ text: String) {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            self.init(ipv4: UInt32(bigEndian: v4.s_addr))
            return
        }
        var v6 = in6_addr()
        guard inet_pton(AF_INET6, text, &v6) == 1 else { return nil }
        let parsed = withUnsafeBytes(of: &v6) { IPAddress(bytes: $0) }
        guard let parsed else { return nil }
        self = parsed
    }

    /// The 16 bytes in network order.
    public var bytes: [UInt8] {
        withNetworkBytes { Array($0) }
    }

    /// Whether this is an IPv4-mapped address (`::ffff:0:0/96`), i.e. an IPv4 address.
    public var isIPv4Mapped: Bool {
        high == 0 && low >> 32 == 0xFFFF
    }

    /// The IPv4 address in host order if this address is IPv4-mapped.
    public var ipv4: UInt32? {
        isIPv4Mapped ? UInt32(truncatingIfNeeded: low) : nil
    }

    public static func < (lhs: IPAddress, rhs: IPAddress) -> Bool {
        (lhs.high, lhs.low) < (rhs.high, rhs.low)
    }

    /// Calls `body` with the 16 bytes in network order, without allocating.
    public func withNetworkBytes<Result>(_ body: (UnsafeRawBufferPointer) throws -> Result) rethrows -> Result {
        var storage = (high.bigEndian, low.bigEndian)
        return try withUnsafeBytes(of: &storage, body)
    }
}

extension IPAddress: CustomStringConvertible {
    /// Dotted quad for IPv4-mapped addresses, RFC 5952 text (from glibc's `inet_ntop`) otherwise.
    public var description: String {
        String(unsafeUninitializedCapacity: IPAddress.maxTextLength) { buffer in
            render(into: buffer.baseAddress!)
        }
    }

    /// The longest text `render(into:)` writes: an IPv6 address with an embedded IPv4 address
    /// (`INET6_ADDRSTRLEN` less its terminating NUL).
    static let maxTextLength = 45

    /// Writes the textual form to `destination`, which must have room for `maxTextLength`
    /// bytes, and returns the number of bytes written.
    ///
    /// The encoder renders every flow's addresses on every scrape, so this writes straight
    /// into its buffer instead of building a `String`.
    func render(into destination: UnsafeMutablePointer<UInt8>) -> Int {
        if isIPv4Mapped {
            return renderDottedQuad(UInt32(truncatingIfNeeded: low), into: destination)
        }
        // inet_ntop needs room for the NUL as well.
        return withUnsafeTemporaryAllocation(of: CChar.self, capacity: IPAddress.maxTextLength + 1) { text in
            let written: Int = withNetworkBytes { raw in
                guard inet_ntop(AF_INET6, raw.baseAddress, text.baseAddress, socklen_t(text.count)) != nil else {
                    return 0  // Cannot happen with a buffer of INET6_ADDRSTRLEN bytes.
                }
                return strlen(text.baseAddress!)
            }
            text.withMemoryRebound(to: UInt8.self) { bytes in
                destination.update(from: bytes.baseAddress!, count: written)
            }
            return written
        }
    }

    private func renderDottedQuad(_ address: UInt32, into destination: UnsafeMutablePointer<UInt8>) -> Int {
        var cursor = destination
        for shift in stride(from: 24, through: 0, by: -8) {
            let octet = UInt8(truncatingIfNeeded: address >> UInt32(shift))
            if octet >= 100 {
                cursor.pointee = UInt8(ascii: "0") + octet / 100
                cursor += 1
            }
            if octet >= 10 {
                cursor.pointee = UInt8(ascii: "0") + octet / 10 % 10
                cursor += 1
            }
            cursor.pointee = UInt8(ascii: "0") + octet % 10
            cursor += 1
            if shift != 0 {
                cursor.pointee = UInt8(ascii: ".")
                cursor += 1
            }
        }
        return cursor - destination
    }
}
