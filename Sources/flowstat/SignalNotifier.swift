// SPDX-License-Identifier: Apache-2.0

import Dispatch
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Turns SIGINT and SIGTERM into an async stream, so `serve` can stop gracefully (close the
/// listener, detach the BPF programs) instead of being killed by the default action.
///
/// A second signal while the first is being handled exits at once, in case the graceful
/// path hangs. Keep the notifier alive for as long as signals should be caught.
final class SignalNotifier {
    /// Each caught signal's number.
    let stream: AsyncStream<Int32>
    private let sources: [any DispatchSourceSignal]

    /// - Parameter exitOnRepeat: exit at once on a second signal (for stop signals, not for
    ///   SIGHUP, which may come any number of times).
    init(signals: [Int32], exitOnRepeat: Bool = true) {
        let (stream, continuation) = AsyncStream.makeStream(of: Int32.self)
        let received = Received()
        self.stream = stream
        self.sources = signals.map { number in
            // Dispatch only sees the signal once the default action (exit) is disabled.
            signal(number, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: number, queue: .global())
            source.setEventHandler {
                if exitOnRepeat, received.count.add(1, ordering: .relaxed).newValue > 1 { _exit(128 + number) }
                continuation.yield(number)
            }
            source.resume()
            return source
        }
    }

    deinit {
        for source in sources { source.cancel() }
    }

    private final class Received: Sendable {
        let count = Atomic<Int>(0)
    }
}
