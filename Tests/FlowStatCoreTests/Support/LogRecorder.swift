// SPDX-License-Identifier: Apache-2.0

import Foundation
import Logging

/// Keeps every message logged through `logger`, debug level included, so that a test can
/// wait for what the server says it did (a deadline fired) instead of sleeping.
final class LogRecorder: @unchecked Sendable {
    private let lock = NSLock()
    private var messages: [String] = []

    var logger: Logger {
        var logger = Logger(label: "test") { _ in Handler(recorder: self) }
        logger.logLevel = .debug
        return logger
    }

    /// How many messages so far contain `text`.
    func count(containing text: String) -> Int {
        lock.withLock { messages.filter { $0.contains(text) }.count }
    }

    var all: [String] { lock.withLock { messages } }

    fileprivate func append(_ message: String) {
        lock.withLock { messages.append(message) }
    }

    private struct Handler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .debug

        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }

        func log(event: LogEvent) {
            recorder.append(event.message.description)
        }
    }
}

/// Polls `condition` every 10 ms until it holds or `bound` has passed; returns whether it held.
func waitUntil(_ bound: Duration, _ condition: () throws -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + bound
    while true {
        if try condition() { return true }
        if ContinuousClock.now >= deadline { return false }
        try await Task.sleep(for: .milliseconds(10))
    }
}
