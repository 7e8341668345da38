// SPDX-License-Identifier: Apache-2.0

import Dispatch
import Logging
import NIOConcurrencyHelpers
import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves the requests of one HTTP connection: `/metrics`, `/health` and the landing page.
///
/// It sits behind NIO's HTTP/1 codec and pipelining handler, which hand it one request at
/// a time and hold back the next until this one's response has ended, so a connection never
/// has two requests in flight. Work that calls into the flow source, compresses or runs
/// bcrypt runs on a thread pool; the event loop only routes and writes.
///
/// Order of checks: oversized head (431) and request bodies (413) first, as they need
/// nothing; then basic auth when configured (401), for every path; then the route (404,
/// 405, or the endpoint). `ConnectionGuard` is told when a request has been received and
/// when its response has been written, for its deadlines.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// The head arrived; answering waits for the end of the request.
        case receiving(HTTPRequestHead)
        /// A response is being produced or written.
        case responding
        /// An error response went out before the request ended; the connection is closing.
        case closing
    }

    private var state = State.idle
    /// False once the channel is gone, so late thread-pool results do not write into it.
    private var isActive = true

    private let pipeline: ExportPipeline
    private let threadPool: NIOThreadPool
    private let maxRequestHeadBytes: Int
    private let auth: (check: BasicAuth, pool: NIOThreadPool)?
    private let logger: Logger
    /// `POST /-/reload`'s action; nil: the endpoint answers 403.
    private let reload: (@Sendable () -> String?)?

    /// - Parameters:
    ///   - threadPool: runs scrapes and compression.
    ///   - auth: the credentials check and the pool its bcrypt runs on (a pool of its own,
    ///     so that a flood of wrong passwords cannot delay scrapes); `nil` for no auth.
    init(
        pipeline: ExportPipeline, threadPool: NIOThreadPool, maxRequestHeadBytes: Int,
        auth: (check: BasicAuth, pool: NIOThreadPool)? = nil, reload: (@Sendable () -> String?)? = nil,
        logger: Logger
    ) {
        self.reload = reload
        self.pipeline = pipeline
        self.threadPool = threadPool
        self.maxRequestHeadBytes = maxRequestHeadBytes
        self.auth = auth
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            if head.approximateSize > maxRequestHeadBytes {
                // The decoder already bounds a head at 80 KiB; this tighter limit answers
                // with the proper status instead of a bare 400.
                refuse(head, .text(.requestHeaderFieldsTooLarge, "request head too large\n"), context: context)
                return
            }
            if head.hasBody {
                // No endpoint takes a body. Answering now and closing means never reading it.
                refuse(head, .text(.payloadTooLarge, "request bodies are not accepted\n"), context: context)
                return
            }
            state = .receiving(head)
        case .body:
            break  // Only after a refusal (the connection is closing): discarded.
        case .end:
            guard case .receiving(let head) = state else { return }
            state = .responding
            context.triggerUserOutboundEvent(ConnectionGuard.Event.requestReceived, promise: nil)
            authorize(head, context: context)
        }
    }

    /// Answers before the request has ended, then closes.
    private func refuse(_ head: HTTPRequestHead, _ response: Response, context: ChannelHandlerContext) {
        state = .closing
        context.triggerUserOutboundEvent(ConnectionGuard.Event.requestReceived, promise: nil)
        respond(context, to: head, with: response, forceClose: true)
    }

    func channelInactive(context: ChannelHandlerContext) {
        isActive = false
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        isActive = false
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        logger.debug("closing HTTP connection after error: \(error)")
        context.close(promise: nil)
    }

    // MARK: - Authentication

    private static let unauthorized = Response.text(
        .unauthorized, "unauthorized\n", headers: [("WWW-Authenticate", #"Basic realm="flowstat", charset="UTF-8""#)])

    /// Routes the request if auth is off or the credentials are right, else answers 401.
    private func authorize(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let auth else {
            route(head, context: context)
            return
        }
        switch auth.check.check(authorization: head.headers.first(name: "Authorization")) {
        case .allowed:
            route(head, context: context)
        case .denied:
            logger.debug("\(head.method) \(head.uri): missing or wrong credentials")
            respond(context, to: head, with: HTTPRequestHandler.unauthorized)
        case .verify(let credentials):
            let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
            auth.pool.runIfActive(eventLoop: context.eventLoop) { [check = auth.check] in
                check.verify(credentials)
            }.whenComplete { result in
                let (handler, context) = loopBound.value
                guard handler.isActive else { return }
                switch result {
                case .success(true):
                    handler.route(head, context: context)
                case .success(false):
                    handler.logger.debug("\(head.method) \(head.uri): wrong credentials for user \(credentials.user)")
                    handler.respond(context, to: head, with: HTTPRequestHandler.unauthorized)
                case .failure:
                    handler.respond(
                        context, to: head, with: .text(.serviceUnavailable, "shutting down\n"), forceClose: true)
                }
            }
        }
    }

    // MARK: - Routing

    private enum Endpoint {
        case metrics
        case health
        case landing
        case apiFlows
        case apiHistogram
    }

    private func route(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        let path = head.uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false).first ?? ""
        let endpoint: Endpoint
        switch path {
        case "/metrics": endpoint = .metrics
        case "/health": endpoint = .health
        case "/": endpoint = .landing
        case "/api/flows": endpoint = .apiFlows
        case "/api/histogram": endpoint = .apiHistogram
        case "/-/reload":
            lifecycleReload(head, context: context)
            return
        default:
            respond(context, to: head, with: .text(.notFound, "not found; try /metrics\n"))
            return
        }
        guard head.method == .GET || head.method == .HEAD else {
            respond(
                context, to: head,
                with: .text(.methodNotAllowed, "method not allowed\n", headers: [("Allow", "GET, HEAD")]))
            return
        }

        let negotiation = ContentNegotiation(
            accept: head.headers[canonicalForm: "Accept"].map(String.init),
            acceptEncoding: head.headers[canonicalForm: "Accept-Encoding"].map(String.init))
        switch endpoint {
        case .apiFlows:
            let query: FlowQuery
            do {
                query = try FlowQuery(uri: head.uri)
            } catch {
                respond(context, to: head, with: .text(.badRequest, error.message + "\n"))
                return
            }
            respondFromThreadPool(context, to: head) { [pipeline, logger] in
                do {
                    let snapshot = try pipeline.viewSnapshot()
                    return .json(FlowQuery.document(query, snapshot: snapshot))
                } catch {
                    logger.error("snapshot for /api/flows failed: \(error)")
                    return .text(.internalServerError, "snapshot failed: \(error)\n")
                }
            }
        case .apiHistogram:
            if head.uri.contains("?") {
                respond(context, to: head, with: .text(.badRequest, "/api/histogram takes no parameters\n"))
                return
            }
            respondFromThreadPool(context, to: head) { [pipeline, logger] in
                do {
                    let snapshot = try pipeline.viewSnapshot()
                    var buffer = ByteBufferAllocator().buffer(capacity: 2048)
                    buffer.writeStaticString("{\"histogram\":")
                    FlowJSON.writeHistogram(snapshot.rttHistogram, into: &buffer)
                    buffer.writeStaticString("}\n")
                    return .json(buffer)
                } catch {
                    logger.error("snapshot for /api/histogram failed: \(error)")
                    return .text(.internalServerError, "snapshot failed: \(error)\n")
                }
            }
        case .landing:
            let page = LandingPage.render(build: pipeline.build, source: pipeline.source.info)
            let response = Response(status: .ok, contentType: "text/html; charset=utf-8", body: page)
            respond(context, to: head, with: response.encoded(gzip: negotiation.gzip))
        case .health:
            respondFromThreadPool(context, to: head) { [pipeline] in
                switch pipeline.health {
                case .serving: .text(.ok, "ok")
                case .unavailable(let reason): .text(.serviceUnavailable, "unavailable: \(reason)\n")
                }
            }
        case .metrics where head.method == .GET && head.version != .http1_0 && head.version != .http0_9:
            streamMetrics(context, to: head, negotiation: negotiation)
        case .metrics:
            // HEAD needs the length; HTTP/1.0 has no chunked encoding: the body held whole.
            respondFromThreadPool(context, to: head) { [pipeline, logger] in
                do {
                    let body = try pipeline.scrape(format: negotiation.format)
                    let response = Response(status: .ok, contentType: negotiation.format.contentType, body: body)
                    return response.encoded(gzip: negotiation.gzip)
                } catch {
                    logger.error("scrape failed: \(error)")
                    return .text(.internalServerError, "snapshot failed: \(error)\n")
                }
            }
        }
    }

    /// `POST /-/reload` (or `PUT`, as Prometheus): re-reads the config; 200 when applied, 500
    /// with the reason when rejected (the previous config stays), 403 unless enabled.
    private func lifecycleReload(_ head: HTTPRequestHead, context: ChannelHandlerContext) {
        guard let reload else {
            respond(
                context, to: head,
                with: .text(.forbidden, "lifecycle API is not enabled (README: reloading the config)\n"))
            return
        }
        guard head.method == .POST || head.method == .PUT else {
            respond(
                context, to: head,
                with: .text(.methodNotAllowed, "method not allowed\n", headers: [("Allow", "POST, PUT")]))
            return
        }
        respondFromThreadPool(context, to: head) {
            if let reason = reload() {
                return .text(
                    .internalServerError, "config reload rejected, the previous config stays in force: \(reason)\n")
            }
            return .text(.ok, "config reloaded\n")
        }
    }

    /// Runs `work` on the thread pool, where it may block, and writes its response back on
    /// the event loop.
    private func respondFromThreadPool(
        _ context: ChannelHandlerContext,
        to head: HTTPRequestHead,
        _ work: @escaping @Sendable () -> Response
    ) {
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        threadPool.runIfActive(eventLoop: context.eventLoop, work).whenComplete { result in
            let (handler, context) = loopBound.value
            guard handler.isActive else { return }
            switch result {
            case .success(let response):
                handler.respond(context, to: head, with: response)
            case .failure:
                // The pool is stopping: the agent is shutting down.
                handler.respond(
                    context, to: head, with: .text(.serviceUnavailable, "shutting down\n"), forceClose: true)
            }
        }
    }

    /// `GET /metrics` streamed: the exposition goes out in chunks (chunked transfer encoding,
    /// gzip compressed as it goes when asked for) while it is encoded, so the agent never
    /// holds it whole and the first byte leaves before the last flow is encoded. The head
    /// goes out with the first piece: a failed snapshot still gets a 500.
    private func streamMetrics(
        _ context: ChannelHandlerContext, to head: HTTPRequestHead, negotiation: ContentNegotiation
    ) {
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        let eventLoop = context.eventLoop
        threadPool.runIfActive(eventLoop: eventLoop) { [pipeline, logger] in
            var headSent = false
            let broken = NIOLockedValueBox(false)
            // Waits for the pieces to be written, a few behind (the back-pressure that keeps
            // memory to a few pieces), while the client keeps up; a client that falls behind by more than
            // `HTTPRequestHandler.slowReaderWait` gets the rest queued instead, as a response
            // held whole would be, so a stalled reader never holds up the next scrape.
            var waitForWrites = true
            var inFlight: [DispatchSemaphore] = []
            var bytesSent = 0
            func write(_ piece: ByteBuffer?, end: Bool) {
                guard !broken.withLockedValue({ $0 }) else { return }
                let sendHead = !headSent
                bytesSent += piece?.readableBytes ?? 0
                let total = bytesSent
                let written = eventLoop.flatSubmit { () -> EventLoopFuture<Void> in
                    let (handler, context) = loopBound.value
                    guard handler.isActive else { return eventLoop.makeFailedFuture(ChannelError.ioOnClosedChannel) }
                    if sendHead {
                        handler.writeStreamedHead(context, to: head, format: negotiation.format, gzip: negotiation.gzip)
                    }
                    if let piece, piece.readableBytes > 0 {
                        let body = context.writeAndFlush(handler.wrapOutboundOut(.body(.byteBuffer(piece))))
                        guard end else { return body }
                        return body.flatMap {
                            let (handler, context) = loopBound.value
                            return handler.endStreamed(context, to: head, bytes: total)
                        }
                    }
                    return end
                        ? handler.endStreamed(context, to: head, bytes: total) : eventLoop.makeSucceededVoidFuture()
                }
                headSent = true
                let done = DispatchSemaphore(value: 0)
                written.whenComplete { result in
                    if case .failure = result { broken.withLockedValue { $0 = true } }
                    done.signal()
                }
                // Past `piecesInFlight` unwritten pieces, wait for the oldest.
                inFlight.append(done)
                guard waitForWrites, inFlight.count > HTTPRequestHandler.piecesInFlight else { return }
                if inFlight.removeFirst().wait(timeout: .now() + HTTPRequestHandler.slowReaderWait) == .timedOut {
                    waitForWrites = false
                    inFlight.removeAll()
                    logger.debug("GET /metrics: the client reads slowly; queueing the rest of the response")
                }
            }
            let gzip = negotiation.gzip ? GzipStream(level: Gzip.level) : nil
            do {
                try pipeline.scrape(format: negotiation.format) { piece in
                    if let gzip {
                        gzip.compress(piece, finish: false) { write($0, end: false) }
                    } else {
                        write(piece, end: false)
                    }
                }
                if let gzip {
                    var last: ByteBuffer?
                    gzip.compress(ByteBuffer(), finish: true) { piece in
                        if let previous = last { write(previous, end: false) }
                        last = piece
                    }
                    write(last, end: true)
                } else {
                    write(nil, end: true)
                }
            } catch {
                logger.error("scrape failed: \(error)")
                guard !headSent else {
                    // Too late for a status: end the connection so the client sees a cut body.
                    _ = eventLoop.submit { loopBound.value.context.close(promise: nil) }
                    return
                }
                _ = eventLoop.submit {
                    let (handler, context) = loopBound.value
                    guard handler.isActive else { return }
                    handler.respond(context, to: head, with: .text(.internalServerError, "snapshot failed: \(error)\n"))
                }
            }
        }.whenFailure { _ in
            // The pool is stopping: the agent is shutting down.
            let (handler, context) = loopBound.value
            guard handler.isActive else { return }
            handler.respond(context, to: head, with: .text(.serviceUnavailable, "shutting down\n"), forceClose: true)
        }
    }

    /// How long a streamed response waits for one piece to be written before it stops
    /// waiting (see `streamMetrics`).
    static let slowReaderWait = DispatchTimeInterval.milliseconds(500)
    /// Pieces (of about 256 KiB) a streamed response may have unwritten, besides the one it
    /// just handed on, before it waits. 0: each piece is written before the next is encoded
    /// into the same buffer. Four measured no faster at 40,000 flows on 2 cores and cost
    /// 13 MiB of RSS (each piece in flight forces a new buffer).
    static let piecesInFlight = 0

    private func writeStreamedHead(
        _ context: ChannelHandlerContext, to request: HTTPRequestHead, format: MetricsEncoder.Format, gzip: Bool
    ) {
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: format.contentType)
        headers.add(name: "Transfer-Encoding", value: "chunked")
        headers.add(name: "Vary", value: "Accept-Encoding")
        if gzip { headers.add(name: "Content-Encoding", value: "gzip") }
        if !request.isKeepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: .ok, headers: headers))),
            promise: nil)
    }

    /// The end of a streamed response, as `respond` ends one.
    private func endStreamed(_ context: ChannelHandlerContext, to request: HTTPRequestHead, bytes: Int)
        -> EventLoopFuture<Void>
    {
        logger.debug("\(request.method) \(request.uri) -> 200", metadata: ["bytes": "\(bytes)", "streamed": "true"])
        let keepAlive = request.isKeepAlive
        if keepAlive {
            if case .responding = state { state = .idle }
        } else {
            state = .closing
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        let channel = context.channel
        let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
        written.whenComplete { result in
            if !keepAlive {
                channel.close(promise: nil)
            } else if case .success = result {
                loopBound.value.triggerUserOutboundEvent(ConnectionGuard.Event.responseSent, promise: nil)
            }
        }
        return written
    }

    // MARK: - Responses

    /// A complete response; every response has a Content-Length, so keep-alive works for
    /// HTTP/1.0 and 1.1 clients alike without chunked encoding.
    struct Response: Sendable {
        var status: HTTPResponseStatus
        var contentType: String
        var body: ByteBuffer
        var headers: [(String, String)] = []

        init(status: HTTPResponseStatus, contentType: String, body: ByteBuffer, headers: [(String, String)] = []) {
            self.status = status
            self.contentType = contentType
            self.body = body
            self.headers = headers
        }

        init(status: HTTPResponseStatus, contentType: String, body: String, headers: [(String, String)] = []) {
            self.init(status: status, contentType: contentType, body: ByteBuffer(string: body), headers: headers)
        }

        static func json(_ body: ByteBuffer) -> Response {
            Response(
                status: .ok, contentType: "application/json", body: body, headers: [("Cache-Control", "no-store")])
        }

        static func text(_ status: HTTPResponseStatus, _ body: String, headers: [(String, String)] = []) -> Response {
            Response(status: status, contentType: "text/plain; charset=utf-8", body: body, headers: headers)
        }

        /// The response gzipped if `gzip`, with `Vary: Accept-Encoding` either way, since
        /// the body depends on that header. Compresses in place: off the event loop for
        /// big bodies.
        func encoded(gzip: Bool) -> Response {
            var response = self
            response.headers.append(("Vary", "Accept-Encoding"))
            if gzip {
                response.body = Gzip.compress(body)
                response.headers.append(("Content-Encoding", "gzip"))
            }
            return response
        }
    }

    private func respond(
        _ context: ChannelHandlerContext,
        to request: HTTPRequestHead,
        with response: Response,
        forceClose: Bool = false
    ) {
        let keepAlive = request.isKeepAlive && !forceClose
        var headers = HTTPHeaders()
        headers.add(name: "Content-Type", value: response.contentType)
        headers.add(name: "Content-Length", value: String(response.body.readableBytes))
        for (name, value) in response.headers {
            headers.add(name: name, value: value)
        }
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if request.version == .http1_0 {
            headers.add(name: "Connection", value: "keep-alive")  // 1.0 closes unless told otherwise
        }

        logger.debug(
            "\(request.method) \(request.uri) -> \(response.status.code)",
            metadata: ["bytes": "\(response.body.readableBytes)"])

        context.write(
            wrapOutboundOut(
                .head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))),
            promise: nil)
        if request.method != .HEAD {
            context.write(wrapOutboundOut(.body(.byteBuffer(response.body))), promise: nil)
        }
        // The state must be final before `.end` is written: the pipelining handler delivers
        // the next buffered request from inside that write, re-entering channelRead.
        if keepAlive {
            if case .responding = state { state = .idle }
        } else {
            state = .closing
        }
        let written = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive {
            let channel = context.channel
            written.whenComplete { _ in channel.close(promise: nil) }
        } else {
            let loopBound = NIOLoopBound(context, eventLoop: context.eventLoop)
            written.whenSuccess {
                loopBound.value.triggerUserOutboundEvent(ConnectionGuard.Event.responseSent, promise: nil)
            }
        }
    }
}

extension HTTPRequestHead {
    /// Whether a body follows the head: a non-zero Content-Length or any Transfer-Encoding.
    fileprivate var hasBody: Bool {
        if headers.contains(name: "Transfer-Encoding") { return true }
        return headers[canonicalForm: "Content-Length"].contains { $0 != "0" }
    }

    /// Bytes the head took on the wire, near enough for a size limit.
    fileprivate var approximateSize: Int {
        var size = method.rawValue.utf8.count + uri.utf8.count + 12  // spaces, version, CRLF
        for header in headers {
            size += header.name.utf8.count + header.value.utf8.count + 4  // ": " and CRLF
        }
        return size
    }
}
