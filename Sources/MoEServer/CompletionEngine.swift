import Dispatch
import Foundation
import MoEJSON
import MoEModels
import MoETensor
import MoETokenizer

/// Runs completions on one model. The model is not safe for concurrent forwards, so all model work
/// goes through one serial queue (off Swift's cooperative pool, which the HTTP server needs), and at
/// most `limits.maxConcurrency` requests may be running or waiting for it at once.
public final class CompletionEngine: Sendable {
    public let model: any CausalLanguageModel
    public let tokenizer: Tokenizer
    /// The name `/v1/models` lists and `model` in a request must match (when given).
    public let modelName: String
    public let limits: ServerLimits
    /// Unix time the engine was made, reported as the model's `created`.
    public let created: Int

    private let queue = DispatchQueue(label: "moe-eval.serve.model")
    private let admission: AdmissionGate
    private let counter = RequestCounter()

    public init(model: any CausalLanguageModel, tokenizer: Tokenizer, modelName: String, limits: ServerLimits = ServerLimits()) {
        self.model = model
        self.tokenizer = tokenizer
        self.modelName = modelName
        self.limits = limits
        self.created = Int(Date().timeIntervalSince1970)
        self.admission = AdmissionGate(limit: max(limits.maxConcurrency, 1))
    }

    public var maxSeqLen: Int { model.shape.maxSeqLen }
    public var vocabSize: Int { model.shape.vocabSize }

    // MARK: - Completions

    /// One choice's result, before it is written as JSON.
    struct Choice: Sendable {
        var promptText: String
        var promptTokens: [Int]
        /// log p(prompt[i] | prompt[..<i]) for i ≥ 1, when echo and logprobs were both asked for.
        var promptLogprobs: [Position] = []
        var generated: [Int] = []
        var generatedLogprobs: [Position] = []
        var text = ""
        var finishReason = "length"
    }

    /// A scored position: the token's log-probability and the top alternatives, best first.
    struct Position: Sendable {
        var logprob: Double
        var top: [(id: Int, logprob: Double)]
    }

    public func complete(_ request: CompletionRequest) async throws -> JSONValue {
        if let name = request.model, name != modelName {
            throw APIError.notFound(
                "model \"\(name)\" is not served here; this server serves \"\(modelName)\" (GET /v1/models)", code: "model_not_found")
        }
        let prompts = try request.prompts.enumerated().map { index, prompt in
            try resolve(prompt, index: index, count: request.prompts.count, request: request)
        }
        guard admission.tryEnter() else { throw APIError.busy(limit: admission.limit) }
        defer { admission.leave() }
        let (choices, seconds) = try await onModelQueue { [self] in
            let start = DispatchTime.now().uptimeNanoseconds
            let choices = try prompts.map { try run($0.tokens, text: $0.text, request: request) }
            return (choices, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        counter.served(
            prompts: choices.count, promptTokens: choices.reduce(0) { $0 + $1.promptTokens.count },
            generatedTokens: choices.reduce(0) { $0 + $1.generated.count }, modelSeconds: seconds)
        return completionJSON(choices, request: request)
    }

    /// The prompt's token ids and text, checked against the vocabulary and the context length.
    func resolve(
        _ prompt: CompletionRequest.Prompt, index: Int, count: Int, request: CompletionRequest
    ) throws
        -> (tokens: [Int], text: String)
    {
        let place = count == 1 ? "prompt" : "prompt[\(index)]"
        let tokens: [Int], text: String
        switch prompt {
        case .tokens(let ids):
            if let bad = ids.firstIndex(where: { $0 >= vocabSize }) {
                throw APIError.invalid(
                    "\(place) token \(bad) has id \(ids[bad]), outside the model's vocabulary (0..<\(vocabSize))",
                    param: "prompt", code: "invalid_token")
            }
            tokens = ids
            text = tokenizer.decode(ids)
        case .text(let string):
            tokens = tokenizer.encode(string, addSpecialTokens: request.addSpecialTokens)
            text = string
            if let bad = tokens.firstIndex(where: { $0 >= vocabSize }) {
                throw APIError.invalid(
                    "\(place) tokenizes to id \(tokens[bad]) (token \(bad)), outside the model's vocabulary (0..<\(vocabSize)): the tokenizer does not match the model",
                    param: "prompt", code: "invalid_token")
            }
        }
        if tokens.count > maxSeqLen {
            throw APIError.contextLength(
                "\(place) has \(tokens.count) tokens, more than the model's max_seq_len \(maxSeqLen); shorten it (lm-eval: --model_args max_length=\(maxSeqLen))"
            )
        }
        if tokens.isEmpty && request.maxTokens > 0 {
            throw APIError.invalid("\(place) is empty: at least one token is needed to generate from", param: "prompt")
        }
        return (tokens, text)
    }

    func onModelQueue<T: Sendable>(_ work: @escaping @Sendable () throws -> T) async throws -> T {
        try await withCheckedThrowingContinuation { continuation in
            queue.async { continuation.resume(with: Result { try work() }) }
        }
    }

    /// Scores the prompt (when echoed with logprobs) and greedily generates up to `maxTokens` tokens.
    /// Runs on the model queue only.
    func run(_ tokens: [Int], text: String, request: CompletionRequest) throws -> Choice {
        var choice = Choice(promptText: text, promptTokens: tokens)
        let topN = request.logprobs ?? 0
        let scorePrompt = request.echo && request.logprobs != nil && tokens.count > 1
        guard request.maxTokens > 0 || scorePrompt else { return choice }

        // A token can be generated while the positions fed so far fit in max_seq_len: the last
        // generated token is never fed back, so n prompt tokens allow max_seq_len − n + 1 new ones.
        let generationBudget = min(request.maxTokens, maxSeqLen - tokens.count + 1)
        let capacity = tokens.count + max(generationBudget - 1, 0)
        let cache = KVCache(model: model, batch: 1, capacity: capacity)
        let promptLogits = try model.forward(
            tokens: tokens.map(Int32.init), batch: 1, seqLen: tokens.count, cache: cache,
            logits: scorePrompt ? .all : .last)
        let vocab = vocabSize
        if scorePrompt {
            for i in 1..<tokens.count {
                choice.promptLogprobs.append(try Self.score(promptLogits.row(i - 1), vocab: vocab, token: tokens[i], topN: topN))
            }
        }
        guard generationBudget > 0 else { return choice }

        var next = scorePrompt ? promptLogits.row(tokens.count - 1) : promptLogits.row(0)
        var stepLogits: Tensor? = nil
        let stopScalars = request.stop.map { Array($0.unicodeScalars) }
        choice.finishReason = "length"
        while true {
            let position = try Self.score(next, vocab: vocab, token: nil, topN: max(topN, 1))
            let token = position.top[0].id
            choice.generated.append(token)
            choice.generatedLogprobs.append(Position(logprob: position.logprob, top: Array(position.top.prefix(topN))))
            if let eos = tokenizer.eosTokenId, token == eos {
                choice.finishReason = "stop"
                break
            }
            if !stopScalars.isEmpty {
                let generatedText = Array(tokenizer.decode(choice.generated, skipSpecialTokens: true).unicodeScalars)
                if let cut = Self.firstMatch(of: stopScalars, in: generatedText) {
                    choice.text = String(String.UnicodeScalarView(generatedText[..<cut]))
                    choice.finishReason = "stop"
                    return choice
                }
            }
            if choice.generated.count == generationBudget { break }
            stepLogits = try model.forward(tokens: [Int32(token)], batch: 1, seqLen: 1, cache: cache, logits: .last)
            next = stepLogits!.row(0)
        }
        let ending = choice.finishReason == "stop" ? choice.generated.dropLast() : choice.generated[...]
        choice.text = tokenizer.decode(Array(ending), skipSpecialTokens: true)
        return choice
    }

    /// Log-softmax of one row of logits, in Double. `token`'s log-probability (the argmax's when nil)
    /// and the top `topN` ids (ties to the lower id) come from the same expression, so a greedy token
    /// has bit-identical values in `token_logprobs` and `top_logprobs`.
    static func score(_ logits: UnsafeMutablePointer<Float>, vocab: Int, token: Int?, topN: Int) throws -> Position {
        var maxValue = -Float.infinity
        var argmax = 0
        for j in 0..<vocab where logits[j] > maxValue {
            maxValue = logits[j]
            argmax = j
        }
        var sum = 0.0
        let shift = Double(maxValue)
        for j in 0..<vocab { sum += exp(Double(logits[j]) - shift) }
        let logNormalizer = shift + log(sum)
        guard logNormalizer.isFinite else {
            throw APIError.internal("the model produced non-finite logits (NaN or infinity); the checkpoint may be damaged")
        }
        func logprob(_ id: Int) -> Double { Double(logits[id]) - logNormalizer }

        var top: [(id: Int, logprob: Double)] = []
        if topN > 0 {
            top.reserveCapacity(topN + 1)
            top.append((argmax, logprob(argmax)))
            if topN > 1 {
                // Keep the best topN by insertion: topN ≤ 20, so this beats sorting the vocabulary.
                for j in 0..<vocab where j != argmax {
                    let v = logits[j]
                    if top.count == topN, v <= logits[top[topN - 1].id] { continue }
                    var at = top.count
                    while at > 0, logits[top[at - 1].id] < v { at -= 1 }
                    top.insert((j, logprob(j)), at: at)
                    if top.count > topN { top.removeLast() }
                }
            }
        }
        return Position(logprob: logprob(token ?? argmax), top: top)
    }

    /// Offset of the earliest place where any of `needles` starts in `haystack` (by Unicode scalars,
    /// so that "\n" is found inside "\r\n").
    static func firstMatch(of needles: [[Unicode.Scalar]], in haystack: [Unicode.Scalar]) -> Int? {
        var best: Int? = nil
        for needle in needles where !needle.isEmpty && needle.count <= haystack.count {
            var start = 0
            while start + needle.count <= haystack.count, start < (best ?? Int.max) {
                if haystack[start] == needle[0], haystack[start..<start + needle.count].elementsEqual(needle) {
                    best = start
                    break
                }
                start += 1
            }
        }
        return best
    }

    // MARK: - JSON

    func completionJSON(_ choices: [Choice], request: CompletionRequest) -> JSONValue {
        var promptTokens = 0, completionTokens = 0
        let items: [JSONValue] = choices.enumerated().map { index, choice in
            promptTokens += choice.promptTokens.count
            completionTokens += choice.generated.count
            let text = request.echo ? choice.promptText + choice.text : choice.text
            return .object([
                ("index", .int(index)),
                ("text", .string(text)),
                ("logprobs", request.logprobs == nil ? .null : logprobsJSON(choice, echo: request.echo, tokensAsIds: request.tokensAsIds)),
                ("finish_reason", .string(choice.finishReason)),
            ])
        }
        return .object([
            ("id", .string("cmpl-\(counter.next())")),
            ("object", .string("text_completion")),
            ("created", .int(Int(Date().timeIntervalSince1970))),
            ("model", .string(modelName)),
            ("choices", .array(items)),
            (
                "usage",
                .object([
                    ("prompt_tokens", .int(promptTokens)),
                    ("completion_tokens", .int(completionTokens)),
                    ("total_tokens", .int(promptTokens + completionTokens)),
                ])
            ),
        ])
    }

    /// OpenAI's legacy `logprobs` object. With echo the arrays cover the prompt and then the generated
    /// tokens, and the first prompt position (which nothing predicts) holds null.
    func logprobsJSON(_ choice: Choice, echo: Bool, tokensAsIds: Bool) -> JSONValue {
        var tokens: [JSONValue] = [], tokenLogprobs: [JSONValue] = [], topLogprobs: [JSONValue] = [], offsets: [JSONValue] = []
        var offset = 0
        func add(_ id: Int, _ position: Position?) {
            let piece = tokenizer.decode([id])
            tokens.append(.string(tokensAsIds ? "token_id:\(id)" : piece))
            offsets.append(.int(offset))
            offset += piece.unicodeScalars.count
            tokenLogprobs.append(position.map { .double($0.logprob) } ?? .null)
            topLogprobs.append(position.map { topJSON($0.top, tokensAsIds: tokensAsIds) } ?? .null)
        }
        if echo {
            let scored = !choice.promptLogprobs.isEmpty
            for (i, id) in choice.promptTokens.enumerated() {
                add(id, scored && i > 0 ? choice.promptLogprobs[i - 1] : nil)
            }
        }
        for (id, position) in zip(choice.generated, choice.generatedLogprobs) { add(id, position) }
        return .object([
            ("tokens", .array(tokens)),
            ("token_logprobs", .array(tokenLogprobs)),
            ("top_logprobs", .array(topLogprobs)),
            ("text_offset", .array(offsets)),
        ])
    }

    /// `{token text: logprob}`, best first. Two ids can decode to the same text (e.g. partial UTF-8
    /// bytes); the better one is kept, so `max(values)` is still the position's best log-probability.
    func topJSON(_ top: [(id: Int, logprob: Double)], tokensAsIds: Bool) -> JSONValue {
        var seen = Set<String>()
        var entries: [(String, JSONValue)] = []
        for (id, logprob) in top {
            let key = tokensAsIds ? "token_id:\(id)" : tokenizer.decode([id])
            if seen.insert(key).inserted { entries.append((key, .double(logprob))) }
        }
        return .object(JSONObject(entries.map { (key: $0.0, value: $0.1) }))
    }

    // MARK: - Tokenizer endpoints

    public var tokenizerInfo: JSONValue {
        func tokenText(_ id: Int?) -> JSONValue { id.flatMap { tokenizer.idToToken($0) }.map(JSONValue.string) ?? .null }
        return .object([
            ("eos_token", tokenText(tokenizer.eosTokenId)),
            ("bos_token", tokenText(tokenizer.bosTokenId)),
            ("pad_token", tokenText(tokenizer.padTokenId)),
            ("eos_token_id", tokenizer.eosTokenId.map(JSONValue.int) ?? .null),
            ("bos_token_id", tokenizer.bosTokenId.map(JSONValue.int) ?? .null),
            ("pad_token_id", tokenizer.padTokenId.map(JSONValue.int) ?? .null),
            ("chat_template", .null),
            ("model_max_length", .int(maxSeqLen)),
            ("vocab_size", .int(tokenizer.vocabSize)),
            ("model_vocab_size", .int(vocabSize)),
            ("tokenizer_class", .string("moe-eval tokenizer.json BPE")),
        ])
    }

    public func tokenize(_ json: JSONValue) throws -> JSONValue {
        guard case .object = json else {
            throw APIError.invalid("the request body must be a JSON object, not \(json.typeName)", code: "invalid_type")
        }
        let fields = FieldReader(json)
        guard let prompt = try fields.string("prompt") else {
            throw APIError.invalid("prompt (a string) is required", param: "prompt", code: "missing_field")
        }
        let ids = tokenizer.encode(prompt, addSpecialTokens: try fields.bool("add_special_tokens") ?? true)
        return .object([
            ("tokens", .array(ids.map(JSONValue.int))),
            ("count", .int(ids.count)),
            ("max_model_len", .int(maxSeqLen)),
        ])
    }

    public func detokenize(_ json: JSONValue) throws -> JSONValue {
        guard case .object = json else {
            throw APIError.invalid("the request body must be a JSON object, not \(json.typeName)", code: "invalid_type")
        }
        guard let value = json["tokens"], case .array(let items) = value else {
            throw APIError.invalid("tokens (a list of token ids) is required", param: "tokens", code: "missing_field")
        }
        var ids: [Int] = []
        ids.reserveCapacity(items.count)
        for (index, item) in items.enumerated() {
            guard let id = item.intValue else {
                throw APIError.invalid(
                    "tokens[\(index)] is \(item.typeName), not an integer token id", param: "tokens", code: "invalid_type")
            }
            guard id >= 0, id < tokenizer.vocabSize else {
                throw APIError.invalid(
                    "tokens[\(index)] = \(id) is outside the tokenizer's vocabulary (0..<\(tokenizer.vocabSize))", param: "tokens",
                    code: "invalid_token")
            }
            ids.append(id)
        }
        return .object([("prompt", .string(tokenizer.decode(ids)))])
    }

    public var healthJSON: JSONValue {
        .object([("status", .string("ok")), ("model", .string(modelName)), ("served", counter.json)])
    }

    public var modelsJSON: JSONValue {
        .object([
            ("object", .string("list")),
            (
                "data",
                .array([
                    .object([
                        ("id", .string(modelName)),
                        ("object", .string("model")),
                        ("created", .int(created)),
                        ("owned_by", .string("moe-eval")),
                        ("max_model_len", .int(maxSeqLen)),
                    ])
                ])
            ),
        ])
    }
}

/// Counts requests admitted to the model; refuses past the limit instead of queueing without bound.
final class AdmissionGate: @unchecked Sendable {
    let limit: Int
    private var inFlight = 0
    private let lock = NSLock()

    init(limit: Int) { self.limit = limit }

    func tryEnter() -> Bool {
        lock.lock(); defer { lock.unlock() }
        guard inFlight < limit else { return false }
        inFlight += 1
        return true
    }

    func leave() {
        lock.lock(); defer { lock.unlock() }
        inFlight -= 1
    }
}

/// Completion ids, and what has been served so far (reported by `/health`).
final class RequestCounter: @unchecked Sendable {
    private var value = 0
    private var completions = 0, prompts = 0, promptTokens = 0, generatedTokens = 0
    private var modelSeconds = 0.0
    private let lock = NSLock()

    func next() -> Int {
        lock.lock(); defer { lock.unlock() }
        value += 1
        return value
    }

    func served(prompts count: Int, promptTokens tokens: Int, generatedTokens generated: Int, modelSeconds seconds: Double) {
        lock.lock(); defer { lock.unlock() }
        completions += 1; prompts += count; promptTokens += tokens; generatedTokens += generated; modelSeconds += seconds
    }

    var json: JSONValue {
        lock.lock(); defer { lock.unlock() }
        return .object([
            ("completion_requests", .int(completions)), ("prompts", .int(prompts)),
            ("prompt_tokens", .int(promptTokens)), ("generated_tokens", .int(generatedTokens)),
            ("model_seconds", .double(modelSeconds)),
        ])
    }
}
