import MoEJSON

/// What a server accepts, beyond which it answers 400, 413 or 503 instead of working.
public struct ServerLimits: Sendable {
    /// Largest request body read; a larger one is answered 413.
    public var maxBodyBytes = 16 << 20
    /// Requests admitted to the model at once, running or waiting; more are answered 503.
    public var maxConcurrency = 16
    /// Prompts in one `/v1/completions` request.
    public var maxPromptsPerRequest = 256
    /// Largest `logprobs` (top-N alternatives per position).
    public var maxTopLogprobs = 20
    /// Stop strings in one request.
    public var maxStopStrings = 64
    /// Nesting depth of the request JSON.
    public var maxJSONDepth = 32

    public init() {}
}

/// A `/v1/completions` request after every field has been checked.
///
/// Fields lm-eval sends: `model`, `prompt`, `max_tokens`, `temperature`, `logprobs`, `echo`, `seed`,
/// `stop`, plus any task `generation_kwargs` passed through unchanged. Fields this server cannot honour
/// (sampling, several choices, streaming, penalties, logit bias, suffix) are refused with 400 rather than
/// silently ignored; fields that do not change greedy decoding (`top_p`, `top_k`, `user`, …) are ignored.
public struct CompletionRequest: Sendable, Equatable {
    public enum Prompt: Sendable, Equatable {
        case tokens([Int])
        case text(String)
    }

    public var prompts: [Prompt]
    public var model: String?
    public var maxTokens: Int
    public var echo: Bool
    /// How many alternatives per position to list in `top_logprobs`; nil means no `logprobs` at all.
    public var logprobs: Int?
    public var stop: [String]
    public var seed: Int?
    /// Whether text prompts get the tokenizer's special tokens (BOS). Off by default, because lm-eval
    /// counts context tokens with `/tokenize` and `add_special_tokens: false`.
    public var addSpecialTokens: Bool
    /// vLLM's `return_tokens_as_token_ids`: name tokens "token_id:ID" in `tokens` and `top_logprobs`
    /// instead of their text, which is ambiguous for partial UTF-8 bytes.
    public var tokensAsIds: Bool

    /// OpenAI's default when `max_tokens` is absent.
    public static let defaultMaxTokens = 16

    public init(
        prompts: [Prompt], model: String? = nil, maxTokens: Int = CompletionRequest.defaultMaxTokens,
        echo: Bool = false, logprobs: Int? = nil, stop: [String] = [], seed: Int? = nil,
        addSpecialTokens: Bool = false, tokensAsIds: Bool = false
    ) {
        self.prompts = prompts; self.model = model; self.maxTokens = maxTokens; self.echo = echo
        self.logprobs = logprobs; self.stop = stop; self.seed = seed; self.addSpecialTokens = addSpecialTokens
        self.tokensAsIds = tokensAsIds
    }

    public init(json: JSONValue, limits: ServerLimits) throws {
        guard case .object = json else {
            throw APIError.invalid("the request body must be a JSON object, not \(json.typeName)", code: "invalid_type")
        }
        let fields = FieldReader(json)
        prompts = try Self.readPrompts(json["prompt"], limits: limits)
        model = try fields.string("model")
        if let value = try fields.int("max_tokens") {
            guard value >= 0 else { throw APIError.invalid("max_tokens must be ≥ 0, not \(value)", param: "max_tokens") }
            maxTokens = value
        } else {
            maxTokens = Self.defaultMaxTokens
        }
        echo = try fields.bool("echo") ?? false
        if let value = json["logprobs"], case .bool = value {
            throw APIError.invalid(
                "logprobs must be an integer (how many alternatives per token), not a boolean", param: "logprobs", code: "invalid_type")
        }
        logprobs = try fields.int("logprobs")
        if let n = logprobs, !(0...limits.maxTopLogprobs).contains(n) {
            throw APIError.invalid("logprobs must be between 0 and \(limits.maxTopLogprobs), not \(n)", param: "logprobs")
        }
        stop = try Self.readStop(json["stop"], limits: limits)
        seed = try fields.int("seed")
        addSpecialTokens = try fields.bool("add_special_tokens") ?? false
        tokensAsIds = try fields.bool("return_tokens_as_token_ids") ?? false

        if let temperature = try fields.number("temperature") {
            guard temperature >= 0 else { throw APIError.invalid("temperature must be ≥ 0, not \(temperature)", param: "temperature") }
            guard temperature == 0 else {
                throw APIError.unsupported(
                    "only greedy decoding is served: temperature must be 0 (got \(temperature))", param: "temperature")
            }
        }
        for name in ["n", "best_of"] {
            if let value = try fields.int(name), value != 1 {
                throw APIError.unsupported("\(name) must be 1: one greedy completion per prompt is served (got \(value))", param: name)
            }
        }
        if try fields.bool("stream") == true {
            throw APIError.unsupported("streaming is not supported: send stream false or leave it out", param: "stream")
        }
        if let suffix = try fields.string("suffix"), !suffix.isEmpty {
            throw APIError.unsupported("suffix is not supported", param: "suffix")
        }
        if let bias = json["logit_bias"], !bias.isNull {
            guard case .object(let entries) = bias else {
                throw APIError.invalid("logit_bias must be an object, not \(bias.typeName)", param: "logit_bias", code: "invalid_type")
            }
            guard entries.isEmpty else { throw APIError.unsupported("logit_bias is not supported", param: "logit_bias") }
        }
        for (name, neutral) in [("presence_penalty", 0.0), ("frequency_penalty", 0.0), ("repetition_penalty", 1.0)] {
            if let value = try fields.number(name), value != neutral {
                throw APIError.unsupported("\(name) is not supported (only \(neutral) is accepted, got \(value))", param: name)
            }
        }
        _ = try fields.number("top_p")
    }

    static func readPrompts(_ value: JSONValue?, limits: ServerLimits) throws -> [Prompt] {
        guard let value, !value.isNull else {
            throw APIError.invalid("prompt is required", param: "prompt", code: "missing_field")
        }
        let shapes = "a string, a list of strings, a list of token ids, or a list of token-id lists"
        switch value {
        case .string(let text):
            return [.text(text)]
        case .array(let items):
            guard !items.isEmpty else { throw APIError.invalid("prompt is an empty list", param: "prompt") }
            let prompts: [Prompt]
            switch items[0] {
            case .string:
                prompts = try items.enumerated().map { index, item in
                    guard case .string(let text) = item else {
                        throw APIError.invalid(
                            "prompt[\(index)] is \(item.typeName), but prompt[0] is a string: prompt must be \(shapes)", param: "prompt",
                            code: "invalid_type")
                    }
                    return .text(text)
                }
            case .array:
                prompts = try items.enumerated().map { index, item in
                    guard case .array(let ids) = item else {
                        throw APIError.invalid(
                            "prompt[\(index)] is \(item.typeName), but prompt[0] is a list: prompt must be \(shapes)", param: "prompt",
                            code: "invalid_type")
                    }
                    return .tokens(try readTokenIds(ids, where: "prompt[\(index)]"))
                }
            case .int, .double:
                prompts = [.tokens(try readTokenIds(items, where: "prompt"))]
            default:
                throw APIError.invalid("prompt[0] is \(items[0].typeName): prompt must be \(shapes)", param: "prompt", code: "invalid_type")
            }
            guard prompts.count <= limits.maxPromptsPerRequest else {
                throw APIError.invalid(
                    "\(prompts.count) prompts in one request; at most \(limits.maxPromptsPerRequest) are accepted", param: "prompt",
                    code: "too_many_prompts")
            }
            return prompts
        default:
            throw APIError.invalid("prompt is \(value.typeName): it must be \(shapes)", param: "prompt", code: "invalid_type")
        }
    }

    static func readTokenIds(_ items: [JSONValue], where place: String) throws -> [Int] {
        var ids: [Int] = []
        ids.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard let id = item.intValue else {
                throw APIError.invalid(
                    "\(place)[\(index)] is \(item.typeName), not an integer token id", param: "prompt", code: "invalid_type")
            }
            guard id >= 0 else {
                throw APIError.invalid("\(place)[\(index)] = \(id) is not a token id (ids are ≥ 0)", param: "prompt", code: "invalid_token")
            }
            ids.append(id)
        }
        return ids
    }

    static func readStop(_ value: JSONValue?, limits: ServerLimits) throws -> [String] {
        guard let value, !value.isNull else { return [] }
        let strings: [String]
        switch value {
        case .string(let s): strings = [s]
        case .array(let items):
            strings = try items.enumerated().map { index, item in
                guard case .string(let s) = item else {
                    throw APIError.invalid("stop[\(index)] is \(item.typeName), not a string", param: "stop", code: "invalid_type")
                }
                return s
            }
        default:
            throw APIError.invalid("stop must be a string or a list of strings, not \(value.typeName)", param: "stop", code: "invalid_type")
        }
        guard strings.count <= limits.maxStopStrings else {
            throw APIError.invalid("\(strings.count) stop strings; at most \(limits.maxStopStrings) are accepted", param: "stop")
        }
        // An empty stop string would end every completion before it starts; it is dropped instead.
        return strings.filter { !$0.isEmpty }
    }
}

/// Reads optional fields of a JSON object, refusing values of the wrong type with a 400 that names the field.
struct FieldReader {
    let object: JSONValue

    init(_ object: JSONValue) { self.object = object }

    private func present(_ name: String) -> JSONValue? {
        guard let value = object[name], !value.isNull else { return nil }
        return value
    }

    private func wrongType(_ name: String, _ value: JSONValue, _ expected: String) -> APIError {
        APIError.invalid("\(name) must be \(expected), not \(value.typeName)", param: name, code: "invalid_type")
    }

    func string(_ name: String) throws -> String? {
        guard let value = present(name) else { return nil }
        guard case .string(let s) = value else { throw wrongType(name, value, "a string") }
        return s
    }

    func bool(_ name: String) throws -> Bool? {
        guard let value = present(name) else { return nil }
        guard case .bool(let b) = value else { throw wrongType(name, value, "a boolean") }
        return b
    }

    func int(_ name: String) throws -> Int? {
        guard let value = present(name) else { return nil }
        guard let i = value.intValue else { throw wrongType(name, value, "an integer") }
        return i
    }

    func number(_ name: String) throws -> Double? {
        guard let value = present(name) else { return nil }
        guard let d = value.doubleValue else { throw wrongType(name, value, "a number") }
        return d
    }
}
