// SPDX-License-Identifier: Apache-2.0

/// A forward-only cursor over memory that the caller has already sized, with the
/// Prometheus-specific number and escaping routines the encoder needs.
///
/// The encoder computes an upper bound for each block of output, reserves it once, and then
/// writes through this cursor without any per-write capacity or bounds check: that is what
/// keeps a series line in the tens of nanoseconds. Every writer documents its maximum output
/// so callers can bound their reservations. Never use it on memory that was not reserved.
struct ByteWriter {
    private let start: UnsafeMutablePointer<UInt8>
    private var cursor: UnsafeMutablePointer<UInt8>

    init(_ start: UnsafeMutablePointer<UInt8>) {
        self.start = start
        self.cursor = start
    }

    init(_ buffer: UnsafeMutableRawBufferPointer) {
        self.init(buffer.baseAddress!.assumingMemoryBound(to: UInt8.self))
    }

    /// Bytes written so far.
    var count: Int { cursor - start }

    /// Most bytes `write(_: Double)` produces: `-2.2250738585072014e-308` is 24.
    static let maxDoubleLength = 32
    /// Most bytes `write(_: UInt64)` produces.
    static let maxIntegerLength = 20

    mutating func write(byte: UInt8) {
        cursor.pointee = byte
        cursor += 1
    }

    mutating func write(_ text: StaticString) {
        write(UnsafeBufferPointer(start: text.utf8Start, count: text.utf8CodeUnitCount))
    }

    mutating func write(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let base = bytes.baseAddress else { return }
        cursor.update(from: base, count: bytes.count)
        cursor += bytes.count
    }

    /// Copies `count` bytes from `source` in whole chunks of `chunkBytes`, inlined: no call
    /// into `memmove` for the name and label set of every series. It reads up to
    /// `chunkBytes - 1` bytes past `source + count` and writes as far past the cursor (the
    /// next writes overwrite them), so both must be readable and reserved that far.
    @inline(__always)
    mutating func writeChunked(_ source: UnsafeRawPointer, count: Int) {
        var offset = 0
        while offset < count {
            UnsafeMutableRawPointer(cursor).storeBytes(
                of: source.loadUnaligned(fromByteOffset: offset, as: SIMD32<UInt8>.self), toByteOffset: offset,
                as: SIMD32<UInt8>.self)
            offset &+= ByteWriter.chunkBytes
        }
        cursor += count
    }

    /// The unit of `writeChunked`, and how far it may read and write past what it copies.
    static let chunkBytes = MemoryLayout<SIMD32<UInt8>>.size

    /// Lets `render` write at the cursor and advances by the count it returns; `render` must
    /// stay within the bound the caller reserved.
    mutating func writeInPlace(_ render: (UnsafeMutablePointer<UInt8>) -> Int) {
        cursor += render(cursor)
    }

    /// Writes `text` verbatim (at most `text.utf8.count` bytes).
    mutating func write(string text: String) {
        var text = text
        text.withUTF8 { write($0) }
    }

    /// Writes a label value escaped as the text format requires: backslash, double quote and
    /// line feed get a backslash (at most twice `text.utf8.count` bytes).
    mutating func writeEscapedLabelValue(_ text: String) {
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\\"): write("\\\\")
            case UInt8(ascii: "\""): write("\\\"")
            case UInt8(ascii: "\n"): write("\\n")
            default: write(byte: byte)
            }
        }
    }

    /// Writes `value` in decimal (at most `maxIntegerLength` bytes).
    mutating func write(_ value: UInt64) {
        let digits = ByteWriter.decimalDigitCount(value)
        writeDigits(value, count: digits)
        cursor += digits
    }

    /// Writes the last `count` decimal digits of `value`, zero-padded, at the cursor without
    /// advancing it. Fills from the right, two digits per division by a constant (which the
    /// compiler turns into a multiplication). Always inlined, like `decimalDigitCount`: they
    /// run for nearly every series, and the compiler left them as calls.
    @inline(__always)
    private func writeDigits(_ value: UInt64, count: Int) {
        let pairs = ByteWriter.digitPairs.utf8Start
        var end = cursor + count
        var remaining = value
        while end - cursor >= 2 {
            let pair = Int(remaining % 100) &* 2
            remaining /= 100
            end -= 2
            end[0] = pairs[pair]
            end[1] = pairs[pair &+ 1]
        }
        if end > cursor {
            cursor[0] = UInt8(ascii: "0") &+ UInt8(truncatingIfNeeded: remaining % 10)
        }
    }

    /// Digits of `value` in decimal: a comparison tree, as values cluster and branches
    /// predict well.
    @inline(__always)
    private static func decimalDigitCount(_ value: UInt64) -> Int {
        if value < 100_000 {
            if value < 100 { return value < 10 ? 1 : 2 }
            if value < 10_000 { return value < 1_000 ? 3 : 4 }
            return 5
        }
        if value < 10_000_000_000 {
            if value < 10_000_000 { return value < 1_000_000 ? 6 : 7 }
            return value < 100_000_000 ? 8 : (value < 1_000_000_000 ? 9 : 10)
        }
        var digits = 11
        var threshold: UInt64 = 100_000_000_000
        while digits < 20, value >= threshold {
            digits += 1
            threshold &*= 10
        }
        return digits
    }

    /// Writes `value` in decimal with a leading minus sign when negative.
    mutating func write(_ value: Int64) {
        if value < 0 { write(byte: UInt8(ascii: "-")) }
        write(value.magnitude)
    }

    /// Writes `value` as a sample value Prometheus parses back to the same double (at most
    /// `maxDoubleLength` bytes).
    ///
    /// - Integral values print as plain integers (`10`, not `10.0` or `1e+01`).
    /// - Values with at most nine decimals (`0.000123`, from kernel microseconds) print as
    ///   that decimal. Both come without any allocation and cover almost every sample.
    /// - Anything else takes Swift's shortest round-trip form (`1.2345678901234567e-10`),
    ///   which is Go `ParseFloat` syntax, as Prometheus reads it.
    /// - Non-finite values are spelled `NaN`, `+Inf` and `-Inf`.
    mutating func write(_ value: Double) {
        guard value.isFinite else {
            if value.isNaN {
                write("NaN")
            } else {
                write(value < 0 ? "-Inf" : "+Inf")
            }
            return
        }
        let magnitude = value.magnitude
        if magnitude < 0x1p63, value.rounded(.towardZero) == value {
            write(Int64(value))  // also turns -0.0 into "0"
            return
        }
        if magnitude < 0x1p53 / 1e9 {
            // If magnitude is the correctly rounded quotient n / 10^9, the decimal text of
            // n / 10^9 parses back to exactly magnitude, so this text is lossless.
            let scaled = (magnitude * 1e9).nearestInteger()
            if scaled / 1e9 == magnitude {
                if value < 0 { write(byte: UInt8(ascii: "-")) }
                writeFixedPoint(nanos: UInt64(scaled))
                return
            }
        }
        write(string: value.description)
    }

    /// Writes `nanos / 10^9` with the fractional part's trailing zeros removed. Callers
    /// guarantee that `nanos` is not a multiple of 10^9, so a fraction digit remains.
    private mutating func writeFixedPoint(nanos: UInt64) {
        write(nanos / 1_000_000_000)
        write(byte: UInt8(ascii: "."))
        writeDigits(nanos % 1_000_000_000, count: 9)
        cursor += 9
        while cursor[-1] == UInt8(ascii: "0") {
            cursor -= 1
        }
    }

    /// "00" "01" … "99": two decimal digits per table lookup.
    private static let digitPairs: StaticString =
        "00010203040506070809101112131415161718192021222324252627282930313233343536373839404142434445464748495051525354555657585960616263646566676869707172737475767778798081828384858687888990919293949596979899"
}
