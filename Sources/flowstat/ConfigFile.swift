// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import FlowStatCore
import Logging

#if canImport(Glibc)
import Glibc
#endif

/// The config file `serve` reads when `-c` is not given: the seed exporter's default.
let defaultConfigPath = "config.yml"

/// Reads the config: `explicitPath` must exist; without it, `config.yml` in the working
/// directory is read if it exists, and the built-in defaults are used otherwise.
func loadConfig(explicitPath: String?, logger: Logger) throws -> FlowStatConfig {
    let path: String
    if let explicitPath {
        path = explicitPath
    } else if access(defaultConfigPath, F_OK) == 0 {
        path = defaultConfigPath
    } else {
        logger.info("no \(defaultConfigPath) in the working directory and no -c/--config: using the built-in defaults")
        return FlowStatConfig()
    }
    do {
        let config = try FlowStatConfig(contentsOf: path)
        logger.info("read config \(path)")
        return config
    } catch {
        throw StartupError(error)
    }
}

/// Writes `FlowStatConfig.sampleYAML` to `path`; an existing file is kept unless `force`.
func writeSampleConfig(to path: String, force: Bool) throws {
    let flags = O_WRONLY | O_CREAT | O_CLOEXEC | (force ? O_TRUNC : O_EXCL)
    let fd = open(path, flags, 0o644)
    guard fd >= 0 else {
        let code = errno
        if code == EEXIST {
            throw StartupError(problem: "\(path) already exists", fix: "choose another file, or add --force to overwrite it")
        }
        throw StartupError(
            problem: "cannot create \(path): \(String(cString: strerror(code)))",
            fix: "check that its directory exists and is writable")
    }
    defer { close(fd) }
    var text = FlowStatConfig.sampleYAML
    let written = text.withUTF8 { bytes in write(fd, bytes.baseAddress, bytes.count) }
    guard written == text.utf8.count else {
        throw StartupError(problem: "cannot write \(path): \(String(cString: strerror(errno)))", fix: "check the free space")
    }
}

extension StartupError {
    /// `config.yml:14: logic.selection.portRanges[0]: lower 443 is above upper 80; write lower <= upper`.
    init(_ error: ConfigError) {
        self.init(problem: "\(error.location): \(error.problem)", fix: error.fix)
    }
}

/// `flowstat check-config FILE`: validate a config file without starting the agent.
struct CheckConfigCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "check-config",
        abstract: "Check a config file and print the settings it gives; exit 1 if it is invalid."
    )

    @Argument(help: "The config file.", completion: .file())
    var file = defaultConfigPath

    func run() throws {
        do {
            let config = try FlowStatConfig(contentsOf: file)
            print("\(file): OK")
            print(config.summary)
        } catch {
            StartupError(error).report()
            throw ExitCode.failure
        }
    }
}
