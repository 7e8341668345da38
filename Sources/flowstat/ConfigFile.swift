// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// Writes `FlowStatConfig.sampleYAML` to `path`; an existing file is kept unless `force`.
func writeSampleConfig(to path: String, force: Bool) throws {
    let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL)
    let fd = open(path, flags, 0o644)
    guard fd >= 0 else {
        let code = errno
        if code == EEXIST {
            throw StartupError(
                problem: "\(path) already exists", fix: "choose another file, or add --force to overwrite it")
        }
        throw StartupError(
            problem: "cannot create \(path): \(String(cString: strerror(code)))",
            fix: "check that its directory exists and is writable")
    }
    defer { close(fd) }
    var text = FlowStatConfig.sampleYAML
    let written = text.withUTF8 { bytes in write(fd, bytes.baseAddress, bytes.count) }
    guard written == text.utf8.count else {
        throw StartupError(
            problem: "cannot write \(path): \(String(cString: strerror(errno)))", fix: "check the free space")
    }
}

/// `flowstat check-config FILE`: validate a config file without starting the agent. Values
/// that load but are not in effect are printed as `warning:` lines (the exit status stays 0).
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a config file and print the settings it gives; exit 1 if it is invalid."
    )

    @Argument(help: "The config file.", completion: .file())
    var file = ConfigFile.defaultPath

    func run() throws {
        do {
            let loaded = try FlowStatConfig.load(contentsOf: file)
            let count = loaded.warnings.count
            print("\(file): OK" + (count == 0 ? "" : " (\(count) warning\(count == 1 ? "" : "s"))"))
            for warning in loaded.warnings {
                print("warning: \(warning)")
            }
            print(loaded.config.summary)
        } catch {
            StartupError(error).report()
            throw ExitCode.failure
        }
    }
}
