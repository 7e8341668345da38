// SPDX-License-Identifier: Apache-2.0

/// The HTML page served at `/`: a live table of the top flows and a chart of the RTT
/// histogram, refreshed every 3 s from `/api/flows` and `/api/histogram` by inline script
/// (no CDN: agents often run where browsers reach no internet), plus which source and hooks
/// the agent uses and links to `/metrics` and `/health`.
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
            <head><meta charset="utf-8"><title>flowstat</title>
            <meta name="viewport" content="width=device-width, initial-scale=1">
            <style>
            body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
            table { border-collapse: collapse; font-size: 0.85em; }
            th, td { padding: 0.2em 0.6em; border-bottom: 1px solid #ddd; }
            td.n { text-align: right; font-variant-numeric: tabular-nums; }
            th { text-align: left; background: #f4f4f4; }
            button.active { font-weight: bold; }
            #rtt-chart rect.bar { fill: #e8743b; }
            #rtt-chart text { font-size: 10px; fill: #444; }
            #status { color: #777; font-size: 0.85em; }
            </style></head>
            <body>
            <h1>flowstat</h1>
            <p>Per-flow TCP metrics from the kernel, for Prometheus. Version \(escape(build.version)), \
            built with Swift \(escape(build.swiftVersion)).</p>
            <ul>
            <li><a href="/metrics">/metrics</a>: Prometheus exposition</li>
            <li><a href="/health">/health</a>: 200 while the flow source is serving</li>
            <li><a href="/api/flows?top=50&amp;sort=rtt">/api/flows</a> and <a href="/api/histogram">/api/histogram</a>: the data below, as JSON</li>
            </ul>
            <h2>Top flows</h2>
            <p>Sort by: <button data-sort="rtt">RTT</button> <button data-sort="retrans">retransmits</button>
            <button data-sort="bytes">bytes</button> <button data-sort="limited">limited by</button>
            <span id="status">loading…</span></p>
            <table id="flows">
            <thead><tr><th>Local</th><th>Peer</th>\(metricHeadings)<th>process</th></tr></thead>
            <tbody></tbody>
            </table>
            <h2>RTT of every sample since start-up</h2>
            <svg id="rtt-chart" width="760" height="240" role="img" aria-label="RTT histogram"></svg>
            <h2>Source: \(escape(source.kind.rawValue))</h2>
            \(source.reason.map { "<p>Fallback: \(escape($0))</p>\n" } ?? "")<ul>
            \(hooks)</ul>
            <script>
            const columns = \(columnsScript);
            \(script)
            </script>
            </body>
            </html>

            """
    }

    /// The catalogue's page columns, in catalogue order.
    private static let pageColumns = FlowMetricCatalogue.all.compactMap { metric in
        metric.pageColumn.map { (json: metric.jsonName.description, column: $0) }
    }

    private static let metricHeadings = pageColumns.map { "<th>\(escape($0.column.title))</th>" }.joined()

    /// `[["rtt_seconds","milliseconds"],…]`: which JSON field each column shows, and how.
    private static let columnsScript =
        "[" + pageColumns.map { "[\"\($0.json)\",\"\($0.column.format.rawValue)\"]" }.joined(separator: ",") + "]"

    /// Plain script, no libraries: the page must work on hosts without internet access.
    /// Values are inserted with textContent, never as HTML.
    static let script = """
        "use strict";
        let sort = "rtt";
        const svgNS = "http://www.w3.org/2000/svg";
        function endpoint(address, port) { return (address.includes(":") ? "[" + address + "]" : address) + ":" + port; }
        function ms(seconds) { return (seconds * 1000).toFixed(3); }
        const formats = {
          milliseconds: ms,
          megabitsPerSecond: (rate) => (rate * 8 / 1e6).toFixed(2),
          integer: (value) => String(value),
          limitedBy: (value, f) => {
            const reasons = ["network", "receiver", "sender_buffer", "application"];
            const seconds = reasons.map((r) => f["limited_" + r + "_seconds"]);
            const total = seconds.reduce((a, b) => a + (b > 0 ? b : 0), 0);
            if (value === null || !(total > 0)) return "-";
            const top = seconds.indexOf(Math.max(...seconds));
            return reasons[top] + " " + Math.round(100 * seconds[top] / total) + "%";
          },
        };
        function cell(row, text, numeric) {
          const td = document.createElement("td");
          td.textContent = text;
          if (numeric) td.className = "n";
          row.appendChild(td);
        }
        function showFlows(data) {
          const body = document.querySelector("#flows tbody");
          body.replaceChildren();
          for (const f of data.flows) {
            const row = document.createElement("tr");
            row.className = "flow";
            cell(row, endpoint(f.src, f.sport));
            cell(row, endpoint(f.dst, f.dport));
            for (const [field, format] of columns) cell(row, formats[format](f[field], f), format !== "limitedBy");
            cell(row, f.comm ? f.comm + (f.pid ? "/" + f.pid : "") : (f.pid ? "pid " + f.pid : "-"));
            body.appendChild(row);
          }
          document.getElementById("status").textContent =
            "showing " + data.flows.length + " of " + data.flows_total + " flows, by " + data.sort +
            ", updated " + new Date().toLocaleTimeString();
        }
        function label(seconds) {
          if (seconds >= 1) return seconds + "s";
          if (seconds >= 0.001) return +(seconds * 1e3).toPrecision(3) + "ms";
          return +(seconds * 1e6).toPrecision(3) + "µs";
        }
        function svg(name, attributes, text) {
          const element = document.createElementNS(svgNS, name);
          for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
          if (text !== undefined) element.textContent = text;
          return element;
        }
        function showHistogram(histogram) {
          const chart = document.getElementById("rtt-chart");
          chart.replaceChildren();
          if (!histogram) {
            chart.appendChild(svg("text", { x: 10, y: 20 }, "this source has no RTT histogram"));
            return;
          }
          const width = 760, height = 240, left = 10, bottom = 40;
          const n = histogram.counts.length, slot = (width - left) / n;
          const highest = Math.max(1, ...histogram.counts);
          histogram.counts.forEach((count, i) => {
            const h = (height - bottom - 10) * count / highest;
            const bar = svg("rect", { class: "bar", x: left + i * slot + 1, y: height - bottom - h,
                                      width: Math.max(slot - 2, 1), height: h });
            const upper = i < histogram.bounds.length ? "≤ " + label(histogram.bounds[i]) : "> " + label(histogram.bounds[n - 2]);
            bar.appendChild(svg("title", {}, upper + ": " + count + " samples"));
            chart.appendChild(bar);
            if (i % 2 === 0 || n <= 12) {
              chart.appendChild(svg("text", { x: left + i * slot, y: height - bottom + 14 }, upper.replace("≤ ", "")));
            }
          });
          chart.appendChild(svg("text", { x: left, y: height - 6 },
            histogram.count + " samples; mean " + label(histogram.count ? histogram.sum / histogram.count : 0)));
        }
        async function refresh() {
          try {
            const [flows, histogram] = await Promise.all([
              fetch("/api/flows?top=50&sort=" + sort).then(r => r.json()),
              fetch("/api/histogram").then(r => r.json()),
            ]);
            showFlows(flows);
            showHistogram(histogram.histogram);
          } catch (error) {
            document.getElementById("status").textContent = "update failed: " + error;
          }
        }
        for (const button of document.querySelectorAll("button[data-sort]")) {
          button.addEventListener("click", () => {
            sort = button.dataset.sort;
            document.querySelectorAll("button[data-sort]").forEach(b => b.classList.toggle("active", b === button));
            refresh();
          });
        }
        document.querySelector("button[data-sort=rtt]").classList.add("active");
        refresh();
        setInterval(refresh, 3000);
        """

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
