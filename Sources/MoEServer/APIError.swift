import Hummingbird
import MoEJSON

/// A refused request, answered as OpenAI answers one:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}` with the matching HTTP status.
public struct APIError: Error, CustomStringConvertible, Sendable {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?
    /// Whether the server closes the connection after answering: the request's unread rest (an
    /// oversized or malformed body) must be neither drained nor parsed as the next request.
    public let closesConnection: Bool

    public init(
        status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil,
        closesConnection: Bool = false
    ) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.closesConnection = closesConnection
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    public var json: JSONValue {
        .object([
            (
                "error",
                .object([
                    ("message", .string(message)),
                    ("type", .string(type)),
                    ("param", param.map(JSONValue.string) ?? .null),
                    ("code", code.map(JSONValue.string) ?? .null),
                ])
            )
        ])
    }

    /// A field with the wrong type or value.
    static func invalid(_ message: String, param: String? = nil, code: String = "invalid_value") -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: code)
    }

    static func unsupported(_ message: String, param: String) -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: "unsupported_value")
    }

    static func contextLength(_ message: String, param: String = "prompt") -> APIError {
        APIError(status: .badRequest, message: message, type: "invalid_request_error", param: param, code: "context_length_exceeded")
    }

    static func bodyTooLarge(limit: Int, declared: Int? = nil) -> APIError {
        let size = declared.map { "request body of \($0) bytes (Content-Length) exceeds" } ?? "request body exceeds"
        return APIError(
            status: .contentTooLarge, message: "\(size) \(limit) bytes (serve --max-body-bytes)",
            type: "invalid_request_error", code: "request_too_large", closesConnection: true)
    }

    /// A body the HTTP decoder could not read: a malformed chunk, a bad Content-Length, a connection cut short.
    static func unreadableBody(_ reason: String) -> APIError {
        APIError(
            status: .badRequest, message: "the request body could not be read (\(reason))",
            type: "invalid_request_error", code: "invalid_body", closesConnection: true)
    }

    static func tooManyConnections(limit: Int) -> APIError {
        APIError(
            status: .serviceUnavailable,
            message: "server busy: \(limit) connections are already open (serve --max-connections); retry later",
            type: "server_busy", code: "too_many_connections", closesConnection: true)
    }

    static func busy(limit: Int) -> APIError {
        APIError(
            status: .serviceUnavailable,
            message: "server busy: \(limit) requests are already running or queued (serve --max-concurrency); retry later",
            type: "server_busy", code: "too_many_requests")
    }

    static func notFound(_ message: String, code: String = "not_found") -> APIError {
        APIError(status: .notFound, message: message, type: "invalid_request_error", code: code)
    }

    static func `internal`(_ message: String) -> APIError {
        APIError(status: .internalServerError, message: message, type: "server_error", code: "internal_error")
    }
}
