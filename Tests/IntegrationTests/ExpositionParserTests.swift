// SPDX-License-Identifier: Apache-2.0

import Foundation
import Testing

/// The tests' own exposition parser (Support/Agent.swift), on fixed text: it must read every
/// well-formed line and refuse, naming it, any line it cannot read, so that a malformed line
/// in flowstat's exposition fails the test that scraped it. Needs no privileges.
@Suite("Exposition parser of the tests")
struct ExpositionParserTests {
    @Test("samples with and without labels, escapes, special values and a timestamp")
    func wellFormed() throws {
        let text = #"""
            # HELP tcp_flows TCP flows.
            # TYPE tcp_flows gauge
            tcp_flows 5
            tcp_flow_rtt_seconds{src="10.0.0.1",sport="80",dst="fd00::2",dport="1000"} 0.000123
            weird{a="say \"hi\"",b="C:\\path",c="two\nlines",d="",e="é {x=1}, y"} -1.5e-7
            nan_one NaN
            up{le="+Inf"} +Inf
            down -Inf
            with_time 1 1700000000000
            trailing_comma{a="1",} 2

            # EOF
            """#
        let exposition = try Exposition(text)
        #expect(
            exposition.samples.map(\.name)
                == [
                    "tcp_flows", "tcp_flow_rtt_seconds", "weird", "nan_one", "up", "down", "with_time",
                    "trailing_comma",
                ])
        #expect(exposition.samples("tcp_flows").first?.value == 5)
        let rtt = try #require(
            exposition.flow("tcp_flow_rtt_seconds", src: "10.0.0.1", sport: 80, dst: "fd00::2", dport: 1000))
        #expect(rtt.value == 0.000123)
        let weird = try #require(exposition.samples("weird").first)
        #expect(weird.labels == ["a": #"say "hi""#, "b": #"C:\path"#, "c": "two\nlines", "d": "", "e": "é {x=1}, y"])
        #expect(weird.value == -1.5e-7)
        #expect(exposition.samples("nan_one").first?.value.isNaN == true)
        #expect(exposition.samples("up").first?.value == .infinity)
        #expect(exposition.samples("up").first?.labels == ["le": "+Inf"])
        #expect(exposition.samples("down").first?.value == -.infinity)
        #expect(exposition.samples("with_time").first?.value == 1)
        #expect(exposition.samples("trailing_comma").first?.labels == ["a": "1"])
    }

    @Test(
        "a line it cannot read throws, naming the line",
        arguments: [
            "tcp_flows",  // no value
            "tcp_flows  5",  // two spaces
            "tcp_flows five",
            "tcp_flows inf",  // Go's ParseFloat reads it, but the format's spelling is +Inf
            "tcp_flows 0x10",
            "tcp_flows 1 2 3",
            "tcp_flows 1 1.5",  // a timestamp is an integer
            "1tcp_flows 1",
            "tcp-flows 1",
            #"tcp_flows{a="1" 1"#,
            #"tcp_flows{a=1} 1"#,
            #"tcp_flows{a="1} 1"#,
            #"tcp_flows{a="\t"} 1"#,
            #"tcp_flows{a="1",a="2"} 1"#,
            #"tcp_flows{a:b="1"} 1"#,
            #"tcp_flows{a="1"}1"#,
            " tcp_flows 1",
        ])
    func malformed(line: String) throws {
        let text = "# TYPE tcp_flows gauge\ntcp_flows 1\n\(line)\n"
        #expect {
            _ = try Exposition(text)
        } throws: { error in
            guard let error = error as? Exposition.MalformedLine else { return false }
            return error.number == 3 && error.line == line && error.description.contains(line)
        }
    }
}
