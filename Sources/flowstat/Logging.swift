// SPDX-License-Identifier: Apache-2.0

import ArgumentParser
import Logging

/// `--log.level` / `--log-level`. Case-insensitive and `warn` is accepted, because the seed
/// exporter took Python's level names (`INFO`, `WARNING`).
enum LogLevelOption: String, ExpressibleByArgument, CaseIterable {
    case debug
    case info
    case warning
    case error

    init?(argument: String) {
        switch argument.lowercased() {
        case "debug": self = .debug
        case "info": self = .info
        case "warning", "warn": self = .warning
        case "error": self = .error
        default: return nil
        }
    }

    var level: Logger.Level {
        switch self {
        case .debug: .debug
        case .info: .info
        case .warning: .warning
        case .error: .error
        }
    }
}

/// Sends every logger's messages at `level` and above to stderr, and returns the command's
/// own logger. Call once, before any logger is created.
func bootstrapLogging(level: Logger.Level) -> Logger {
    LoggingSystem.bootstrap { label in
        var handler = StreamLogHandler.standardError(label: label)
        handler.logLevel = level
        return handler
    }
    return Logger(label: "flowstat")
}
