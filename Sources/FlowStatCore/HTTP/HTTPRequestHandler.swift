import Logging
import NIOCore
import NIOHTTP1
import NIOPosix

/// Serves the requests of one HTTP connection: `/metrics`, `/health` and the landing page.
///
/// It sits behind NIO's HTTP/1 codec and pipelining handler, which hand it one request at
/// a time and hold back the next until this one's response has ended, so a connection never
/// has two requests in flight. Work that calls into the flow source runs on the thread pool;
/// the event loop only routes and writes.
final class HTTPRequestHandler: ChannelInboundHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    private enum State {
        /// Between requests.
        case idle
        /// The head arrived; answering waits for the end of the (ignored) body.
        case receiving(HTTPRequestHead)
        /// A response is being produced or written.
        case responding
        /// An error response went out before the request ended; the connection is closing.
        case closing
    }

    private var state = State.idle
    /// False once the channel is gone, so late thread-pool results do not write into it.
    private var isActive = true

    private let scraper: Scraper
    private let threadPool: NIOThreadPool
    private let maxRequestHeadBytes: Int
    private let logger: Logger

    init(scraper: Scraper, threadPool: NIOThreadPool, maxRequestHeadBytes: Int, logger: Logger) {
        self.scraper = scraper
        self.threadPool = threadPool
        self.maxRequestHeadBytes = maxRequestHeadBytes
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head):
            guard case .idle = state else { return }
            if head.approximateSize > maxRequestHeadBytes {
                // The decoder already bounds a head at 80 KiB; this tighter limit answers
                // with the proper status instead of a bare 400.
                state = .closing
                respond(
                    context, to: head, with: .text(.requestHeaderFieldsTooLarge, "request head too large\n"),
                    forceClose: true)
                return
            }
            state = .receiving(head)
        case .body:
            break  // No endpoint takes a body; discarding it keeps memory bounded.
        case .end:
            guard case .receiving(let head) = state else { return }
            state = .responding
            route(head, context: context)
        }
    }

    func userInboundEventTriggered(context: ChannelHandlerContext, event: Any) {
        // Idle keep-alive connections are closed; a slow response in progress is not cut.
        if event is IdleStateHandler.IdleStateEvent, case .idle = state {
            context.close(promise: nil)
            return
        }
        context.fireUserInboundEventTriggered(event)
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

        switch endpoint {
        case .apiFlows:
            let query: FlowQuery
            do {
                query = try FlowQuery(uri: head.uri)
            } catch {
                respond(context, to: head, with: .text(.badRequest, error.message + "\n"))
                return
            }
            respondFromThreadPool(context, to: head) { [scraper, logger] in
                do {
                    let snapshot = try scraper.viewSnapshot()
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
            respondFromThreadPool(context, to: head) { [scraper, logger] in
                do {
                    let snapshot = try scraper.viewSnapshot()
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
            let page = LandingPage.render(build: scraper.build, source: scraper.source.info)
            respond(context, to: head, with: Response(status: .ok, contentType: "text/html; charset=utf-8", body: page))
        case .health:
            respondFromThreadPool(context, to: head) { [scraper] in
                switch scraper.health {
                case .serving: .text(.ok, "ok")
                case .unavailable(let reason): .text(.serviceUnavailable, "unavailable: \(reason)\n")
                }
            }
        case .metrics:
            respondFromThreadPool(context, to: head) { [scraper, logger] in
                do {
                    let body = try scraper.scrape()
                    return Response(status: .ok, contentType: MetricsEncoder.contentType, body: body)
                } catch {
                    logger.error("scrape failed: \(error)")
                    return .text(.internalServerError, "snapshot failed: \(error)\n")
                }
            }
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
                handler.respond(context, to: head, with: .text(.serviceUnavailable, "shutting down\n"), forceClose: true)
            }
        }
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
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: response.status, headers: headers))),
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
        }
    }
}

extension HTTPRequestHead {
    /// Bytes the head took on the wire, near enough for a size limit.
    fileprivate var approximateSize: Int {
        var size = method.rawValue.utf8.count + uri.utf8.count + 12  // spaces, version, CRLF
        for header in headers {
            size += header.name.utf8.count + header.value.utf8.count + 4  // ": " and CRLF
        }
        return size
    }
}
