import MoETokenizer

/// lm-eval's `loglikelihood` request: how likely `continuation` is after `context`.
public struct LoglikelihoodRequest: Hashable, Sendable {
    public var context: String
    public var continuation: String
    public init(context: String, continuation: String) { self.context = context; self.continuation = continuation }
}

/// A loglikelihood request after tokenization. `context` is never empty (an empty text context becomes
/// the prefix token), and the model scores every token of `continuation`.
public struct TokenRequest: Hashable, Sendable {
    public var context: [Int]
    public var continuation: [Int]
    public init(context: [Int], continuation: [Int]) { self.context = context; self.continuation = continuation }
}

/// The sum of the continuation tokens' log-probabilities, and whether greedy decoding would have
/// produced exactly those tokens.
public struct LoglikelihoodResult: Equatable, Sendable {
    public var logprob: Double
    public var isGreedy: Bool
    public init(logprob: Double, isGreedy: Bool) { self.logprob = logprob; self.isGreedy = isGreedy }
}

/// Answers the requests of benchmark tasks, in the harness's terms (strings in, numbers out, input order
/// kept). `TokenizedScorer` implements it over a tokenizer and a `LanguageModelScorer`; tests use fakes.
public protocol TextScorer {
    func loglikelihood(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult]
    /// The total log-likelihood of each text, every token predicted (`loglikelihood_rolling`).
    func loglikelihoodRolling(_ texts: [String]) throws -> [Double]
}

public struct RequestEncodingError: Error, CustomStringConvertible {
    public let description: String
}

/// Tokenization as lm-eval's API backends (`local-completions`) do it (`TemplateLM.loglikelihood` and
/// `_encode_pair`): no special tokens; trailing whitespace of the context moves into the continuation;
/// the continuation's tokens are those of `context + continuation` after the context's own tokens; an
/// empty context becomes the prefix token (BOS, else EOS), unless the continuation starts with it.
public struct RequestEncoder: Sendable {
    public let tokenizer: Tokenizer
    /// The token that stands in for an empty context and opens every rolling window.
    public let prefixTokenId: Int?

    /// `prefixTokenId` nil: the tokenizer's BOS, else its EOS — the remote-tokenizer backend's
    /// `bos_token_id or eos_token_id`, so a BOS of id 0 falls through to EOS as it does there.
    public init(tokenizer: Tokenizer, prefixTokenId: Int? = nil) {
        self.tokenizer = tokenizer
        if let prefixTokenId {
            self.prefixTokenId = prefixTokenId
        } else if let bos = tokenizer.bosTokenId, bos != 0 {
            self.prefixTokenId = bos
        } else {
            self.prefixTokenId = tokenizer.eosTokenId
        }
    }

    func requirePrefix(_ purpose: String) throws -> Int {
        guard let prefixTokenId else {
            throw RequestEncodingError(
                description: "\(purpose) needs a prefix token, but the tokenizer has neither a BOS nor an EOS token; give one explicitly")
        }
        return prefixTokenId
    }

    public func encode(_ request: LoglikelihoodRequest) throws -> TokenRequest {
        var unused: [[UInt8]: [Int]] = [:]
        return try encode(request, contextCache: &unused)
    }

    /// `contextCache` keeps the context tokens of texts seen before (all choices of a question share one).
    func encode(_ request: LoglikelihoodRequest, contextCache: inout [[UInt8]: [Int]]) throws -> TokenRequest {
        if request.context.isEmpty {
            let continuation = tokenizer.encode(request.continuation, addSpecialTokens: false)
            guard let first = continuation.first else {
                throw RequestEncodingError(description: "a loglikelihood request has an empty context and an empty continuation")
            }
            let prefix = try requirePrefix("a request with an empty context")
            return prefix != first
                ? TokenRequest(context: [prefix], continuation: continuation)
                : TokenRequest(context: [first], continuation: Array(continuation.dropFirst()))
        }
        var context = PythonText.scalars(request.context)
        var continuationText = request.continuation
        let spaces = PythonText.trailingSpaceCount(context)
        if spaces > 0 {
            continuationText = PythonText.string(context.suffix(spaces)) + continuationText
            context.removeLast(spaces)
        }
        let contextText = PythonText.string(context)
        let whole = tokenizer.encode(contextText + continuationText, addSpecialTokens: false)
        let contextTokens: [Int]
        // Keyed by bytes: String keys would merge canonically equivalent texts that tokenize differently.
        let key = Array(contextText.utf8)
        if let cached = contextCache[key] {
            contextTokens = cached
        } else {
            contextTokens = tokenizer.encode(contextText, addSpecialTokens: false)
            contextCache[key] = contextTokens
        }
        let continuation = Array(whole.dropFirst(min(contextTokens.count, whole.count)))
        if contextTokens.isEmpty {
            // Whitespace-only context: the harness would send an empty context too; it cannot be scored.
            throw RequestEncodingError(
                description:
                    "a loglikelihood request's context \(String(reflecting: request.context)) has no tokens once its trailing whitespace moves to the continuation"
            )
        }
        return TokenRequest(context: contextTokens, continuation: continuation)
    }

    public func encode(_ requests: [LoglikelihoodRequest]) throws -> [TokenRequest] {
        var cache: [[UInt8]: [Int]] = [:]
        return try requests.map { try encode($0, contextCache: &cache) }
    }
}

/// lm-eval's rolling windows (`get_rolling_token_windows` with `context_len=1`, then `make_disjoint_window`):
/// the first window predicts its tokens from the prefix token, every later one predicts up to `maxLength`
/// new tokens from the tokens just before them, so each token is predicted exactly once.
public func rollingWindows(tokens: [Int], prefixToken: Int, maxLength: Int) -> [TokenRequest] {
    guard !tokens.isEmpty, maxLength >= 1 else { return [] }
    var windows: [TokenRequest] = []
    let first = min(maxLength, tokens.count)
    windows.append(TokenRequest(context: [prefixToken], continuation: Array(tokens[0..<first])))
    var predicted = first
    while predicted < tokens.count {
        let count = min(tokens.count - predicted, maxLength)
        let end = predicted + count
        let input = tokens[(end - maxLength - 1)..<(end - 1)]
        windows.append(
            TokenRequest(
                context: Array(input.prefix(input.count - (count - 1))),
                continuation: Array(tokens[(end - count)..<end])))
        predicted += count
    }
    return windows
}

/// Scores text requests by tokenizing them as the harness's API backend does and asking a token-level
/// scorer; rolling texts are split into windows of the scorer's `maxLength` and their sums added.
public final class TokenizedScorer: TextScorer {
    public let encoder: RequestEncoder
    public let scorer: LanguageModelScorer

    public init(encoder: RequestEncoder, scorer: LanguageModelScorer) {
        self.encoder = encoder
        self.scorer = scorer
    }

    public func loglikelihood(_ requests: [LoglikelihoodRequest]) throws -> [LoglikelihoodResult] {
        try scorer.loglikelihood(encoder.encode(requests))
    }

    public func loglikelihoodRolling(_ texts: [String]) throws -> [Double] {
        let prefix = try encoder.requirePrefix("loglikelihood_rolling")
        return try scorer.loglikelihoodRolling(
            texts.map { encoder.tokenizer.encode($0, addSpecialTokens: false) },
            prefixToken: prefix)
    }
}
