// SPDX-License-Identifier: Apache-2.0

extension Double {
    /// The integer nearest this value, which must not be negative (ties to even, which no
    /// caller tells apart). Inlined arithmetic: `rounded()` is a call into libm's `round`,
    /// as x86-64's baseline has no rounding instruction, and the encoder rounds most values
    /// it writes. Adding 2^52 leaves no fraction bits, so subtracting it again leaves the
    /// rounded value; every double from 2^52 up is an integer already.
    @inline(__always)
    func nearestInteger() -> Double {
        self < 0x1p52 ? (self + 0x1p52) - 0x1p52 : self
    }
}
