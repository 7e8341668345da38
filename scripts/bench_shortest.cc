// SPDX-License-Identifier: Apache-2.0
// bench_shortest.cc: shortest round-trip double to text for scripts/bench_encode_floor.c,
// from Google's double-conversion (Debian: libdouble-conversion-dev). glibc's printf has
// no shortest mode (a %.*g loop costs several conversions per value), and the agent's
// Swift runtime has a fast one; a C exporter would link a library like this one, so the
// floor does too. Spelled as Swift's description spells doubles: decimal from 1e-4 up to
// 2^53, else "1.5e-05" / "1e+16" (a sign and at least two exponent digits).
#include <double-conversion/double-to-string.h>
#include <double-conversion/utils.h>

using double_conversion::DoubleToStringConverter;
using double_conversion::StringBuilder;

extern "C" int fs_bench_shortest(double value, char *out, int room)
{
	static const DoubleToStringConverter converter(
		DoubleToStringConverter::EMIT_POSITIVE_EXPONENT_SIGN, "+Inf", "NaN", 'e', -4, 16, 0, 0, 2);
	StringBuilder builder(out, room);
	converter.ToShortest(value, &builder);
	int length = builder.position();
	builder.Finalize();
	return length;
}
