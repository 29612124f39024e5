import Foundation
import HTTPTypes
import MoEJSON
// Hummingbird builds on these and its HTTP/1 pipeline hands them to extra channel handlers; they come with it.
import NIOCore
import NIOHTTPTypes

/// What one client may hold: how long each stage of a connection may take and how many connections
/// may be open at once. A client that stalls (partial headers, a body that stops, a kept-alive
/// connection never used again) is disconnected when its stage's time runs out, so stalled clients
/// cannot pile up until file descriptors or memory run out.
public struct ConnectionLimits: Sendable {
    /// From the connection opening until the request line and headers of its first request are complete.
    public var headerTimeout: Duration = .seconds(10)
    /// From a request's headers until its whole body has arrived.
    public var bodyTimeout: Duration = .seconds(60)
    /// From a response until the headers of the next request on the same connection are complete.
    /// Longer than the 15 s aiohttp (lm-eval's async client) keeps an idle connection, so the
    /// client, not the server, closes between requests.
    public var idleTimeout: Duration = .seconds(60)
    /// Connections open at once; one more is answered 503 and closed.
    public var maxConnections = 4096
    /// Request line and header bytes; a larger head is answered 400 (Hummingbird's default is 80 KiB,
    /// which times the connection cap would let stalled clients pin hundreds of megabytes).
    public var maxHeaderBytes = 16 * 1024

    public init() {}

    /// File descriptors the process needs besides its connections: standard streams, the listening
    /// socket, event-loop descriptors, checkpoint files, connections being refused, and the
    /// `/proc/<tid>/stat` files libdispatch's worker-pool monitor opens — when that open fails it
    /// crashes the process (the SIGILL of issue 16, seen once connections had taken every descriptor).
    public static let reservedFileDescriptors = 64

    /// Raises this process's soft limit on open files to its hard limit (as servers commonly do) and
    /// returns the limit now in force, or nil when it cannot be read.
    public static func raiseOpenFileLimit() -> Int? {
        #if canImport(Glibc)
        let openFiles = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        #else
        let openFiles = RLIMIT_NOFILE
        #endif
        var limit = rlimit()
        guard getrlimit(openFiles, &limit) == 0 else { return nil }
        if limit.rlim_cur < limit.rlim_max {
            var raised = limit
            raised.rlim_cur = limit.rlim_max
            if setrlimit(openFiles, &raised) == 0 { limit = raised }
        }
        return limit.rlim_cur >= rlim_t(Int.max) ? Int.max : Int(limit.rlim_cur)
    }
}

/// The number of connections open across every event loop.
final class OpenConnectionCount: @unchecked Sendable {
    let limit: Int
    private var open = 0
    private let lock = NSLock()

    init(limit: Int) { self.limit = limit }

    var current: Int { lock.lock(); defer { lock.unlock() }; return open }

    func tryOpen() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard open < limit else { return false }
        open += 1
        return true
    }

    func close() {
        lock.lock(); defer { lock.unlock() }
        open -= 1
    }
}

/// Sits after the HTTP/1 decoder on every connection: refuses connections over the cap with 503,
/// closes a connection whose current stage (headers, body, idle) outlives its limit, and closes it
/// after a response that says `Connection: close` (a refused oversized or unreadable body, whose
/// unread rest must not be drained or parsed as a next request).
final class ConnectionGuardHandler: ChannelDuplexHandler, RemovableChannelHandler {
    typealias InboundIn = HTTPRequestPart
    typealias InboundOut = HTTPRequestPart
    typealias OutboundIn = HTTPResponsePart
    typealias OutboundOut = HTTPResponsePart

    private let limits: ConnectionLimits
    private let openConnections: OpenConnectionCount
    private var started = false
    private var counted = false
    private var readingRequest = false
    private var requestsStarted = 0
    private var responsesEnded = 0
    private var closeAfterResponse = false
    private var stageDeadline: Scheduled<Void>?

    init(limits: ConnectionLimits, openConnections: OpenConnectionCount) {
        self.limits = limits
        self.openConnections = openConnections
    }

    // Hummingbird adds its handlers once the accepted channel is already active, so there may be
    // no channelActive to wait for.
    func handlerAdded(context: ChannelHandlerContext) {
        if context.channel.isActive { start(context) }
    }

    func channelActive(context: ChannelHandlerContext) {
        start(context)
        context.fireChannelActive()
    }

    func channelInactive(context: ChannelHandlerContext) {
        finish()
        context.fireChannelInactive()
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        finish()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head:
            requestsStarted += 1
            readingRequest = true
            arm(context, after: limits.bodyTimeout)
        case .body:
            break
        case .end:
            readingRequest = false
            // Computing the answer may take as long as it takes: no stage runs until the response ends.
            disarm()
            if responsesEnded >= requestsStarted { arm(context, after: limits.idleTimeout) }
        }
        context.fireChannelRead(data)
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        switch unwrapOutboundIn(data) {
        case .head(let head):
            if head.status.kind != .informational, head.headerFields[.connection]?.lowercased() == "close" {
                closeAfterResponse = true
            }
        case .body:
            break
        case .end:
            responsesEnded += 1
            if closeAfterResponse {
                disarm()
                let written = context.eventLoop.makePromise(of: Void.self)
                if let promise { written.futureResult.cascade(to: promise) }
                let channel = context.channel
                written.futureResult.whenComplete { _ in channel.close(promise: nil) }
                context.writeAndFlush(data, promise: written)
                return
            }
            if !readingRequest && responsesEnded >= requestsStarted { arm(context, after: limits.idleTimeout) }
        }
        context.write(data, promise: promise)
    }

    private func start(_ context: ChannelHandlerContext) {
        guard !started else { return }
        started = true
        guard openConnections.tryOpen() else {
            refuse(context)
            return
        }
        counted = true
        arm(context, after: limits.headerTimeout)
    }

    /// Answers 503 without reading the request, then closes: a refused connection holds its file
    /// descriptor only as long as the answer takes to write.
    private func refuse(_ context: ChannelHandlerContext) {
        let error = APIError.tooManyConnections(limit: openConnections.limit)
        let body = ByteBuffer(string: error.json.serialized)
        let head = HTTPResponse(
            status: error.status,
            headerFields: [
                .contentType: "application/json", .contentLength: String(body.readableBytes), .connection: "close",
            ])
        context.write(wrapOutboundOut(.head(head)), promise: nil)
        context.write(wrapOutboundOut(.body(body)), promise: nil)
        let channel = context.channel
        context.writeAndFlush(wrapOutboundOut(.end(nil))).whenComplete { _ in channel.close(promise: nil) }
    }

    private func arm(_ context: ChannelHandlerContext, after limit: Duration) {
        disarm()
        let channel = context.channel
        stageDeadline = context.eventLoop.scheduleTask(in: TimeAmount(limit)) { channel.close(promise: nil) }
    }

    private func disarm() {
        stageDeadline?.cancel()
        stageDeadline = nil
    }

    private func finish() {
        disarm()
        if counted {
            counted = false
            openConnections.close()
        }
    }
}
