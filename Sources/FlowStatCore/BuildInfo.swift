// SPDX-License-Identifier: Apache-2.0

/// The version of flowstat and of the compiler that built it, for `flowstat_build_info`,
/// `--version` and the landing page.
public struct BuildInfo: Sendable, Hashable {
    /// flowstat's version.
    public var version: String
    /// The Swift compiler version (major.minor) the binary was built with.
    public var swiftVersion: String

    public init(version: String, swiftVersion: String) {
        self.version = version
        self.swiftVersion = swiftVersion
    }

    /// This build.
    public static let current = BuildInfo(version: "0.1.0-dev", swiftVersion: compilerVersion)

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
