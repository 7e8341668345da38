// SPDX-License-Identifier: Apache-2.0

import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// Set by the SIGINT/SIGTERM/SIGHUP handler `top` installs; the loop polls it after poll(2)
/// returns EINTR, then restores the terminal and exits.
private let stopSignal = Atomic<Int32>(0)

/// The controlling terminal in the mode `flowstat top` needs: keys arrive one at a time
/// without echo, drawing happens on the alternate screen with the cursor hidden.
/// `restore()` puts every setting back; it runs on every exit path, signals included.
final class RawTerminal {
    private var saved = termios()
    private var active = false

    /// Switches standard input to non-canonical, no-echo mode and the screen to the
    /// alternate buffer. Ctrl-C still sends SIGINT (ISIG stays on), which `top` catches.
    init() throws {
        guard tcgetattr(0, &saved) == 0 else {
            throw StartupError(
                problem: "cannot read the terminal settings of standard input: \(String(cString: strerror(errno)))",
                fix: "run flowstat top in a terminal, or use --once")
        }
        var raw = saved
        raw.c_lflag &= ~tcflag_t(ICANON | ECHO)
        withUnsafeMutableBytes(of: &raw.c_cc) { cc in
            cc[Int(VMIN)] = 0
            cc[Int(VTIME)] = 0
        }
        guard tcsetattr(0, TCSAFLUSH, &raw) == 0 else {
            throw StartupError(
                problem: "cannot set the terminal to raw mode: \(String(cString: strerror(errno)))",
                fix: "run flowstat top in a terminal, or use --once")
        }
        active = true
        for number in [SIGINT, SIGTERM, SIGHUP] {
            signal(number) { stopSignal.store($0, ordering: .relaxed) }
        }
        // Alternate screen, cursor hidden.
        writeStandardOutput("\u{1B}[?1049h\u{1B}[?25l")
    }

    /// The signal that asked to stop, 0 if none.
    var stopRequestedBy: Int32 { stopSignal.load(ordering: .relaxed) }

    /// Terminal size in characters; 80x24 when it cannot be read.
    var size: (width: Int, height: Int) {
        var window = winsize()
        guard ioctl(1, UInt(TIOCGWINSZ), &window) == 0, window.ws_col > 0, window.ws_row > 0 else { return (80, 24) }
        return (Int(window.ws_col), Int(window.ws_row))
    }

    /// Draws `lines` over the previous frame in one write.
    func draw(_ lines: [String]) {
        // Home, each line followed by clear-to-end-of-line, then clear below.
        writeStandardOutput("\u{1B}[H" + lines.joined(separator: "\u{1B}[K\r\n") + "\u{1B}[K\u{1B}[J")
    }

    /// Waits up to `milliseconds` for input; returns the bytes read (empty on timeout or signal).
    func readKeys(timeoutMilliseconds: Int32) -> [UInt8] {
        var descriptor = pollfd(fd: 0, events: Int16(POLLIN), revents: 0)
        guard poll(&descriptor, 1, max(timeoutMilliseconds, 0)) > 0 else { return [] }
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = read(0, &bytes, bytes.count)
        // End of input (the terminal went away) reads as a quit.
        if count == 0 { return [UInt8(ascii: "q")] }
        return count > 0 ? Array(bytes[..<count]) : []
    }

    /// Leaves the alternate screen, shows the cursor and restores the saved settings.
    func restore() {
        guard active else { return }
        active = false
        writeStandardOutput("\u{1B}[?25h\u{1B}[?1049l")
        tcsetattr(0, TCSAFLUSH, &saved)
        for number in [SIGINT, SIGTERM, SIGHUP] { signal(number, SIG_DFL) }
    }

    deinit { restore() }
}
