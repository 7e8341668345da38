// SPDX-License-Identifier: Apache-2.0

import Logging
import NIOCore

/// Deadlines for one HTTP connection, so that slow or silent clients cannot hold it:
///
/// - **request**: a request head must arrive whole within `request` of its first byte
///   (or of the connection's start, for the first request). A client that trickles a head
///   byte by byte (slowloris) gets `408` and is closed.
/// - **response**: a response must be written out within `response` of the request.
///   A client that stops reading a large response is closed.
/// - **idle**: a keep-alive connection with no request for `idle` is closed.
///
/// It sits right after TLS (or first), where it sees plain request bytes; the request
/// handler tells it when a request has been received and when its response has been sent,
/// with outbound user events (`Event`).
final class ConnectionGuard: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// Sent by the request handler with `triggerUserOutboundEvent`.
    enum Event: Sendable {
        /// A whole request has been received (or refused early); its response is next.
        case requestReceived
        /// A response has been written to the socket.
        case responseSent
    }

    struct Timeouts: Sendable {
        var request: TimeAmount
        var response: TimeAmount
        var idle: TimeAmount
    }

    private enum Phase {
        /// Waiting for the head of the first request, or of a request begun after a response.
        case readingRequest
        /// Between requests on a kept-alive connection.
        case idle
        /// At least one request is being answered.
        case responding
        /// A 408 went out; the connection closes when it is written or after a grace period.
        case closing
    }

    /// How long a 408 may take to go out. A TLS client that stalled in its handshake
    /// never lets it through, so the close cannot wait for the write alone.
    private static let closingGrace = TimeAmount.seconds(1)

    private let timeouts: Timeouts
    private let logger: Logger
    private var phase = Phase.readingRequest
    /// Requests received and not yet answered; pipelining can order the events so that
    /// the next request is received before the previous response has been sent.
    private var inFlight = 0
    private var deadline: Scheduled<Void>?

    init(timeouts: Timeouts, logger: Logger) {
        self.timeouts = timeouts
        self.logger = logger
    }

    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { arm(timeouts.request, context: context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        if deadline == nil { arm(timeouts.request, context: context) }
        context.fireChannelActive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
    }

    func channelInactive(context: ChannelHandlerContext) {
        deadline?.cancel()
        deadline = nil
        context.fireChannelInactive()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        if case .closing = phase { return }  // answered already; what follows is not read
        if case .idle = phase {
            phase = .readingRequest
            arm(timeouts.request, context: context)
        }
        context.fireChannelRead(data)
    }

    func triggerUserOutboundEvent(context: ChannelHandlerContext, event: Any, promise: EventLoopPromise<Void>?) {
        guard let event = event as? Event else {
            context.triggerUserOutboundEvent(event, promise: promise)
            return
        }
        if case .closing = phase {
            promise?.succeed(())
            return
        }
        switch event {
        case .requestReceived:
            inFlight += 1
            if inFlight == 1 {
                phase = .responding
                arm(timeouts.response, context: context)
            }
        case .responseSent:
            inFlight = max(inFlight - 1, 0)
            if inFlight == 0 {
                phase = .idle
                arm(timeouts.idle, context: context)
            }
        }
        promise?.succeed(())
    }

    private func arm(_ timeout: TimeAmount, context: ChannelHandlerContext) {
        deadline?.cancel()
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        deadline = context.eventLoop.scheduleTask(in: timeout) {
            let (handler, context) = loopBound.value
            handler.expired(context: context)
        }
    }

    private func expired(context: ChannelHandlerContext) {
        deadline = nil
        guard context.channel.isActive else { return }
        switch phase {
        case .readingRequest:
            logger.debug("closing HTTP connection: no complete request within \(timeouts.request)")
            // Nothing of a response is on the wire yet, so a whole one can still go out.
            let timeout = ByteBuffer(
                string: "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
            let channel = context.channel
            phase = .closing
            arm(ConnectionGuard.closingGrace, context: context)
            context.writeAndFlush(wrapOutboundOut(timeout)).whenComplete { _ in channel.close(promise: nil) }
        case .responding:
            logger.debug("closing HTTP connection: response not written within \(timeouts.response)")
            context.close(promise: nil)
        case .idle, .closing:
            context.close(promise: nil)
        }
    }
}

/// Caps the connections served at once. At the cap the listener stops accepting, so
/// further clients wait in the kernel's listen backlog until a connection closes, as
/// Prometheus' own `--web.max-connections` does; the few a single accept batch may bring
/// past the cap are closed at once.
final class ConnectionLimiter: ChannelInboundHandler {
    typealias InboundIn = any Channel
    typealias InboundOut = any Channel

    private let maxConnections: Int
    private let logger: Logger
    private var open = 0
    private var paused = false

    init(maxConnections: Int, logger: Logger) {
        self.maxConnections = maxConnections
        self.logger = logger
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let child = unwrapInboundIn(data)
        guard open < maxConnections else {
            logger.debug("closing a connection over the limit of \(maxConnections)")
            context.fireChannelRead(data)
            child.eventLoop.execute { child.close(promise: nil) }
            return
        }
        open += 1
        let loopBound = NIOLoopBound((handler: self, context: context), eventLoop: context.eventLoop)
        child.closeFuture.hop(to: context.eventLoop).whenComplete { _ in
            let (handler, context) = loopBound.value
            handler.released(context: context)
        }
        if open >= maxConnections, !paused {
            paused = true
            logger.debug("\(open) connections open: not accepting more until one closes")
            context.channel.setOption(ChannelOptions.autoRead, value: false).whenComplete { _ in }
        }
        context.fireChannelRead(data)
    }

    private func released(context: ChannelHandlerContext) {
        open -= 1
        if paused, open < maxConnections {
            paused = false
            context.channel.setOption(ChannelOptions.autoRead, value: true).whenComplete { _ in }
        }
    }
}
