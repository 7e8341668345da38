// SPDX-License-Identifier: Apache-2.0

/// What a request's `Accept` and `Accept-Encoding` headers ask for, as far as `/metrics`
/// cares: the exposition format and whether to gzip.
///
/// Parsed leniently: a malformed element is skipped, never an error, because the answer
/// is always one of two formats every client can read.
struct ContentNegotiation: Sendable, Hashable {
    var format: MetricsEncoder.Format
    var gzip: Bool

    init(accept: [String], acceptEncoding: [String]) {
        format = ContentNegotiation.format(accept: accept)
        gzip = ContentNegotiation.gzip(acceptEncoding: acceptEncoding)
    }

    /// OpenMetrics when an `application/openmetrics-text` range (version 1.0.0, 0.0.1 or
    /// none) has a positive quality at least as high as any `text/plain` range; otherwise
    /// the Prometheus text format, which `*/*` and no header also get.
    static func format(accept: [String]) -> MetricsEncoder.Format {
        var openMetrics = 0.0
        var text = 0.0
        for element in elements(of: accept) {
            let mediaType = element.value
            let version = element.parameters["version"]
            if mediaType == "application/openmetrics-text", version == nil || version == "1.0.0" || version == "0.0.1" {
                openMetrics = max(openMetrics, element.quality)
            } else if mediaType == "text/plain" {
                text = max(text, element.quality)
            }
        }
        return openMetrics > 0 && openMetrics >= text ? .openMetrics : .prometheusText
    }

    /// Whether `gzip` (or `x-gzip`) is acceptable: listed with a positive quality, or not
    /// listed while `*` is. `gzip;q=0` refuses it whatever `*` says.
    static func gzip(acceptEncoding: [String]) -> Bool {
        var gzipQuality: Double?
        var wildcardQuality: Double?
        for element in elements(of: acceptEncoding) {
            switch element.value {
            case "gzip", "x-gzip": gzipQuality = max(gzipQuality ?? 0, element.quality)
            case "*": wildcardQuality = element.quality
            default: break
            }
        }
        if let gzipQuality { return gzipQuality > 0 }
        return (wildcardQuality ?? 0) > 0
    }

    /// One comma-separated element: lowercased value, lowercased parameter names, and `q`
    /// (1 when absent, 0 when unparsable or out of range).
    struct Element {
        var value: String
        var parameters: [String: String]
        var quality: Double
    }

    static func elements(of headers: [String]) -> [Element] {
        var result: [Element] = []
        for header in headers {
            for item in header.split(separator: ",") {
                var parts = item.split(separator: ";").map { $0.trimmingASCIIWhitespace() }
                guard let value = parts.first, !value.isEmpty else { continue }
                parts.removeFirst()
                var parameters: [String: String] = [:]
                for parameter in parts {
                    let pair = parameter.split(separator: "=", maxSplits: 1)
                    guard pair.count == 2 else { continue }
                    var parameterValue = pair[1].trimmingASCIIWhitespace()
                    if parameterValue.count >= 2, parameterValue.hasPrefix("\""), parameterValue.hasSuffix("\"") {
                        parameterValue = String(parameterValue.dropFirst().dropLast())
                    }
                    parameters[pair[0].trimmingASCIIWhitespace().lowercased()] = parameterValue
                }
                var quality = 1.0
                if let q = parameters.removeValue(forKey: "q") {
                    quality = Double(q).flatMap { (0...1).contains($0) ? $0 : nil } ?? 0
                }
                result.append(Element(value: value.lowercased(), parameters: parameters, quality: quality))
            }
        }
        return result
    }
}

extension StringProtocol {
    /// The text without leading and trailing spaces and tabs.
    fileprivate func trimmingASCIIWhitespace() -> String {
        var slice = Substring(self)
        while let first = slice.first, first == " " || first == "\t" { slice.removeFirst() }
        while let last = slice.last, last == " " || last == "\t" { slice.removeLast() }
        return String(slice)
    }
}
