import Foundation
import Hummingbird
import HummingbirdCore
import Logging
import MoEJSON

/// The OpenAI-compatible HTTP surface lm-evaluation-harness's `local-completions` model talks to
/// (lm-eval.md §6): completions with echoed prompt log-probabilities, the remote-tokenizer endpoints
/// at the server root, the model list and a health check. Every refusal is an OpenAI error object.
public enum CompletionServer {
    public static func router(engine: CompletionEngine) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: OpenAIErrorMiddleware())
        let limits = engine.limits

        router.get("health") { _, _ in
            jsonResponse(engine.healthJSON)
        }
        router.get("v1/models") { _, _ in
            jsonResponse(engine.modelsJSON)
        }
        router.post("v1/completions") { request, _ in
            let body = try await readJSON(request, limits: limits)
            let completion = try await engine.complete(try CompletionRequest(json: body, limits: limits))
            return jsonResponse(completion)
        }
        router.get("tokenizer_info") { _, _ in
            jsonResponse(engine.tokenizerInfo)
        }
        router.post("tokenize") { request, _ in
            jsonResponse(try engine.tokenize(try await readJSON(request, limits: limits)))
        }
        router.post("detokenize") { request, _ in
            jsonResponse(try engine.detokenize(try await readJSON(request, limits: limits)))
        }
        return router
    }

    /// The server, bound to `host:port` (port 0 picks a free one; `onListening` gets the bound port).
    public static func application(
        engine: CompletionEngine, host: String, port: Int,
        connectionLimits: ConnectionLimits = ConnectionLimits(),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    )
        -> some ApplicationProtocol
    {
        var logger = Logger(label: "moe-eval.serve")
        logger.logLevel = .warning
        let openConnections = OpenConnectionCount(limit: connectionLimits.maxConnections)
        let headerBytes = connectionLimits.maxHeaderBytes
        let http1 = HTTP1Channel.Configuration(
            additionalChannelHandlers: [ConnectionGuardHandler(limits: connectionLimits, openConnections: openConnections)],
            httpDecoderConfiguration: .init(
                maxHeaderFieldSize: headerBytes, maxHeaderListSize: headerBytes,
                maxHeaderFieldCount: 100))
        return Application(
            router: router(engine: engine),
            server: .http1(configuration: http1),
            // A burst of connections (an evaluation harness opening its pool) must wait in the listen
            // queue, not be dropped: a dropped SYN costs the client a 1 s retransmit. The kernel caps
            // the backlog at net.core.somaxconn.
            configuration: .init(
                address: .hostname(host, port: port), serverName: "moe-eval",
                backlog: max(256, min(connectionLimits.maxConnections, 4096))),
            onServerRunning: { channel in await onListening(channel.localAddress?.port ?? port) },
            logger: logger)
    }

    /// Serves until SIGINT or SIGTERM, then finishes the requests in flight and returns.
    public static func serve(
        engine: CompletionEngine, host: String, port: Int,
        connectionLimits: ConnectionLimits = ConnectionLimits(),
        onListening: @escaping @Sendable (Int) async -> Void = { _ in }
    ) async throws {
        try await application(
            engine: engine, host: host, port: port, connectionLimits: connectionLimits,
            onListening: onListening
        ).runService()
    }

    static func readJSON(_ request: Request, limits: ServerLimits) async throws -> JSONValue {
        // A declared size over the limit is refused before any of the body is read.
        if let declared = request.headers[.contentLength].flatMap({ Int($0) }), declared > limits.maxBodyBytes {
            throw APIError.bodyTooLarge(limit: limits.maxBodyBytes, declared: declared)
        }
        let buffer: ByteBuffer
        do {
            buffer = try await request.body.collect(upTo: limits.maxBodyBytes)
        } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
            throw APIError.bodyTooLarge(limit: limits.maxBodyBytes)
        } catch let error as CancellationError {
            throw error
        } catch {
            throw APIError.unreadableBody(String(describing: error))
        }
        let bytes = buffer.getBytes(at: buffer.readerIndex, length: buffer.readableBytes) ?? []
        guard !bytes.isEmpty else {
            throw APIError.invalid("the request body is empty: send a JSON object", code: "invalid_json")
        }
        do {
            return try JSONValue.parse(bytes, maxDepth: limits.maxJSONDepth)
        } catch let error as JSONParseError {
            throw APIError.invalid("the request body is not valid JSON (\(error.description))", code: "invalid_json")
        }
    }

    static func jsonResponse(_ value: JSONValue, status: HTTPResponse.Status = .ok, closesConnection: Bool = false) -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if closesConnection { headers[.connection] = "close" }
        return Response(status: status, headers: headers, body: .init(byteBuffer: ByteBuffer(string: value.serialized)))
    }
}

/// Turns every error a route throws (ours, the router's 404, a body over the limit, anything
/// unexpected) into an OpenAI-style error response.
struct OpenAIErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as APIError {
            return CompletionServer.jsonResponse(error.json, status: error.status, closesConnection: error.closesConnection)
        } catch let error as any HTTPResponseError {
            let apiError: APIError
            switch error.status {
            case .notFound:
                apiError = .notFound(
                    "no route \(request.method) \(request.uri.path); this server has POST /v1/completions, GET /v1/models, GET /health, GET /tokenizer_info, POST /tokenize, POST /detokenize"
                )
            case .contentTooLarge:
                apiError = APIError(
                    status: .contentTooLarge, message: "request body too large", type: "invalid_request_error",
                    code: "request_too_large", closesConnection: true)
            default:
                let message = (error as? HTTPError)?.body ?? error.status.reasonPhrase
                apiError = APIError(
                    status: error.status, message: message,
                    type: error.status.code < 500 ? "invalid_request_error" : "server_error")
            }
            return CompletionServer.jsonResponse(apiError.json, status: apiError.status, closesConnection: apiError.closesConnection)
        } catch {
            let apiError = APIError.internal("internal error: \(String(describing: error))")
            return CompletionServer.jsonResponse(apiError.json, status: apiError.status)
        }
    }
}
