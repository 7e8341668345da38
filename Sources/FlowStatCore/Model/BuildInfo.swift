// SPDX-License-Identifier: Apache-2.0

import CFlowStat

/// The version of flowstat and of the compiler that built it, for `flowstat_build_info`,
/// `--version` and the landing page.
public struct BuildInfo: Sendable, Hashable {
    /// flowstat's version: `git describe` of the commit built ("0.2.0", "0.2.0-3-g1a2b3c4",
    /// "0.0.0-dev+1a2b3c4" without tags; "-dirty" with uncommitted changes), or "unknown".
    public var version: String
    /// The commit built (40 hex digits), or "unknown".
    public var revision: String
    /// The Swift compiler version (major.minor) the binary was built with.
    public var swiftVersion: String

    public init(version: String, revision: String = "unknown", swiftVersion: String) {
        self.version = version
        self.revision = revision
        self.swiftVersion = swiftVersion
    }

    /// This build: version and commit from git at build time (scripts/version.sh, run by the
    /// Makefile before every build).
    public static let current = BuildInfo(
        version: String(cString: fs_build_version()), revision: String(cString: fs_build_revision()),
        swiftVersion: compilerVersion)

    // The compiler does not expose its version as a value, only to `#if compiler(...)`.
    private static var compilerVersion: String {
        #if compiler(>=6.6)
        return ">=6.6"
        #elseif compiler(>=6.5)
        return "6.5"
        #elseif compiler(>=6.4)
        return "6.4"
        #elseif compiler(>=6.3)
        return "6.3"
        #elseif compiler(>=6.2)
        return "6.2"
        #elseif compiler(>=6.1)
        return "6.1"
        #else
        return "6.0"
        #endif
    }
}
