// SPDX-License-Identifier: Apache-2.0

import Foundation
import NIOCore
import Testing

@testable import FlowStatCore

@Suite("gzip streamed")
struct GzipStreamTests {
    @Test("pieces compressed as they come expand, with /bin/gzip, to the input; one member")
    func roundTrip() throws {
        var input: [UInt8] = []
        for index in 0..<600_000 { input.append(contentsOf: "flow \(index % 977) rtt \(index * 31 % 10_007)\n".utf8) }
        let stream = try #require(GzipStream(level: 1, pieceBytes: 16 << 10))
        var compressed: [UInt8] = []
        var pieces = 0
        var offset = 0
        while offset < input.count {
            let end = min(offset + 250_000, input.count)
            stream.compress(ByteBuffer(bytes: input[offset..<end]), finish: false) { piece in
                compressed.append(contentsOf: piece.readableBytesView)
                pieces += 1
            }
            offset = end
        }
        stream.compress(ByteBuffer(), finish: true) { piece in
            compressed.append(contentsOf: piece.readableBytesView)
            pieces += 1
        }
        #expect(pieces > 3)
        #expect(try gunzip(compressed) == input)
        // One member: the gzip magic appears once, at the start.
        #expect(compressed.starts(with: [0x1f, 0x8b]))
    }
}
