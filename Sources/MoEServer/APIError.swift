import MoEJSON
import Hummingbird

/// A refused request, answered as OpenAI answers one:
/// `{"error": {"message": …, "type": …, "param": …, "code": …}}` with the matching HTTP status.
public struct APIError: Error, CustomStringConvertible, Sendable {
    public let status: HTTPResponse.Status
    public let message: String
    public let type: String
    public let param: String?
    public let code: String?

    public init(status: HTTPResponse.Status, message: String, type: String, param: String? = nil, code: String? = nil) {
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
    }

    public var description: String { "\(status.code) \(type): \(message)" }

    public var json: JSONValue {
        .object([("error", .object([
            ("message", .string(message)),
            ("type", .string(type)),
            ("param", param.map(JSONValue.string) ?? .null),
            ("code", code.map(JSONValue.string) ?? .null),
        ]))])
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

    static func bodyTooLarge(limit: Int) -> APIError {
        APIError(status: .contentTooLarge, message: "request body exceeds \(limit) bytes (serve --max-body-bytes)",
                 type: "invalid_request_error", code: "request_too_large")
    }

    static func busy(limit: Int) -> APIError {
        APIError(status: .serviceUnavailable,
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
