/// The small HTML page served at `/`: what this agent is, which source and hooks it uses,
/// and links to `/metrics` and `/health`.
enum LandingPage {
    static func render(build: BuildInfo, source: SourceInfo) -> String {
        var hooks = ""
        if source.hooks.isEmpty {
            hooks = "<li>none (this source does not use kernel hooks)</li>\n"
        }
        for hook in source.hooks {
            let state: String
            if hook.attached {
                state = "attached"
            } else {
                state = "not attached" + (hook.error.map { ": " + escape($0) } ?? "")
            }
            hooks += "<li><code>\(escape(hook.name))</code> via <code>\(escape(hook.variant))</code>: \(state)</li>\n"
        }
        return """
            <!DOCTYPE html>
            <html lang="en">
            <head><meta charset="utf-8"><title>flowstat</title></head>
            <body>
            <h1>flowstat</h1>
            <p>Per-flow TCP metrics from the kernel, for Prometheus. Version \(escape(build.version)), \
            built with Swift \(escape(build.swiftVersion)).</p>
            <ul>
            <li><a href="/metrics">/metrics</a>: Prometheus exposition</li>
            <li><a href="/health">/health</a>: 200 while the flow source is serving</li>
            </ul>
            <h2>Source: \(escape(source.kind.rawValue))</h2>
            \(source.reason.map { "<p>Fallback: \(escape($0))</p>\n" } ?? "")<ul>
            \(hooks)</ul>
            </body>
            </html>

            """
    }

    /// Escapes text for HTML element content and attribute values.
    static func escape(_ text: String) -> String {
        var escaped = ""
        escaped.reserveCapacity(text.utf8.count)
        for character in text {
            switch character {
            case "&": escaped += "&amp;"
            case "<": escaped += "&lt;"
            case ">": escaped += "&gt;"
            case "\"": escaped += "&quot;"
            case "'": escaped += "&#39;"
            default: escaped.append(character)
            }
        }
        return escaped
    }
}
