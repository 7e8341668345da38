// SPDX-License-Identifier: Apache-2.0

import FlowStatCore
import Testing

@Suite("--web.listen-address parsing")
struct ListenAddressTests {
    @Test(
        "accepted forms",
        arguments: [
            (":8020", nil, 8020), ("127.0.0.1:9100", "127.0.0.1", 9100), ("0.0.0.0:80", "0.0.0.0", 80),
            ("localhost:8020", "localhost", 8020), ("[::1]:8020", "::1", 8020), ("[::]:0", "::", 0),
            ("[fe80::1%eth0]:8020", "fe80::1%eth0", 8020), (":65535", nil, 65535),
        ] as [(String, String?, Int)])
    func parses(text: String, host: String?, port: Int) throws {
        let address = try ListenAddress(parsing: text)
        #expect(address == ListenAddress(host: host, port: port))
        #expect(address.description == text)
    }

    @Test(
        "rejected forms name the problem",
        arguments: [
            ("8020", "missing port"), ("localhost", "missing port"), ("::1:8020", "brackets"),
            ("[::1]", "missing \":port\""), ("[::1]8020", "missing \":port\""), ("[::1:8020", "missing \"]\""),
            ("[]:80", "empty"), (":", "port must be"), (":abc", "port must be"), (":65536", "port must be"),
            (":-1", "port must be"), (":+80", "port must be"), ("", "missing port"),
        ] as [(String, String)])
    func rejects(text: String, reason: String) {
        #expect {
            try ListenAddress(parsing: text)
        } throws: { error in
            let error = error as? ListenAddressError
            return error?.text == text && error?.reason.contains(reason) == true
                && error?.description.hasPrefix("invalid listen address") == true
        }
    }

    @Test("-p replaces only the port")
    func withPort() throws {
        #expect(try ListenAddress(parsing: "[::1]:8020").withPort(9000).description == "[::1]:9000")
        #expect(ListenAddress.default.withPort(1).description == ":1")
    }
}
