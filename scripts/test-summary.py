#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Summarises the output of `swift test`, both XCTest and Swift Testing.

    swift test ... 2>&1 | scripts/test-summary.py

Every input line is passed through to stdout unchanged, as it arrives. At the end comes a
summary: how many tests ran, passed, failed and were skipped, each skipped test with its
reason, each failed test by name; the last line is exactly `N passed, N failed, N skipped`.

Informational only: it always exits 0 (the caller keeps `swift test`'s own exit status,
e.g. with `set -o pipefail`).

The lines it reads (Swift 6.3; Swift Testing prints plain symbols when not on a terminal):

  Swift Testing, one final line per test (a parameterized test counts once):
    ✔ Test "name" passed after 0.001 seconds.
    ✔ Test name() with 3 test cases passed after 0.001 seconds.
    ✘ Test "name" failed after 0.001 seconds with 1 issue.
    ➜ Test "name" skipped: "reason"                  (also each test of a skipped suite)
    ➜ Test "name" was cancelled after 0.001 seconds: "reason"   (counted as skipped)
  and "✘ Test run with N tests in M suites failed ...", which is not a test.

  XCTest:
    Test Case 'Class.testName' passed (0.001 seconds)
    Test Case 'Class.testName' failed (0.001 seconds)
    Test Case 'Class.testName' skipped (0.001 seconds)
  the reason of a skip on the line before:
    /path/File.swift:25: Class.testName : Test skipped - reason
"""
import re
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")

# Swift Testing. The name is a quoted display name (which may itself hold quotes) or a
# function's name with its argument labels.
ST_RUN = re.compile(r"^\S+ Test run with \d+ tests?\b")
ST_PASSED = re.compile(r"^✔ Test (?P<name>.+?)(?: with \d+ test cases?)? passed after [\d.]+ seconds")
ST_FAILED = re.compile(r"^✘ Test (?P<name>.+?)(?: with \d+ test cases?)? failed after [\d.]+ seconds")
ST_SKIPPED = re.compile(r'^➜ Test (?P<name>.+?) skipped(?:: "(?P<reason>.*)")?$')
ST_CANCELLED = re.compile(r'^➜ Test (?P<name>.+?)(?: with \d+ test cases?)? was cancelled after [\d.]+ seconds'
                          r'(?:: "(?P<reason>.*)")?')

# XCTest.
XC_RESULT = re.compile(r"^Test Case '(?P<name>[^']+)' (?P<result>passed|failed|skipped) \(")
XC_SKIP_REASON = re.compile(r"^.*?: (?P<name>[\w.]+) : Test skipped(?: - (?P<reason>.*))?$")


class Summary:
    def __init__(self):
        self.passed = []
        self.failed = []
        self.skipped = []  # (framework, name, reason)
        self.xctest_skip_reasons = {}

    def read(self, line):
        line = ANSI.sub("", line).rstrip("\r\n")
        if ST_RUN.match(line):
            return
        match = ST_PASSED.match(line)
        if match:
            self.passed.append(("Swift Testing", match["name"]))
            return
        match = ST_FAILED.match(line)
        if match:
            self.failed.append(("Swift Testing", match["name"]))
            return
        match = ST_SKIPPED.match(line)
        if match:
            self.skipped.append(("Swift Testing", match["name"], match["reason"] or "no reason given"))
            return
        match = ST_CANCELLED.match(line)
        if match:
            reason = match["reason"] or "no reason given"
            self.skipped.append(("Swift Testing", match["name"], f"cancelled: {reason}"))
            return
        match = XC_SKIP_REASON.match(line)
        if match:
            self.xctest_skip_reasons[match["name"]] = match["reason"] or "no reason given"
            return
        match = XC_RESULT.match(line)
        if match:
            name, result = match["name"], match["result"]
            if result == "passed":
                self.passed.append(("XCTest", name))
            elif result == "failed":
                self.failed.append(("XCTest", name))
            else:
                self.skipped.append(("XCTest", name, self.xctest_skip_reasons.pop(name, "no reason given")))

    def report(self):
        ran = len(self.passed) + len(self.failed)
        lines = ["", "Test summary:",
                 f"  {ran + len(self.skipped)} tests: {ran} ran ({len(self.passed)} passed, "
                 f"{len(self.failed)} failed), {len(self.skipped)} skipped"]
        if self.skipped:
            lines.append("  Skipped:")
            lines += [f"    {name} ({framework}): {reason}" for framework, name, reason in self.skipped]
        if self.failed:
            lines.append("  Failed:")
            lines += [f"    {name} ({framework})" for framework, name in self.failed]
        lines.append(f"{len(self.passed)} passed, {len(self.failed)} failed, {len(self.skipped)} skipped")
        return "\n".join(lines) + "\n"


def main():
    summary = Summary()
    out = sys.stdout.buffer
    for raw in sys.stdin.buffer:
        out.write(raw)
        out.flush()
        summary.read(raw.decode("utf-8", errors="replace"))
    out.write(summary.report().encode("utf-8"))
    out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
