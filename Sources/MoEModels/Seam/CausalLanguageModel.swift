import Foundation
import MoETensor

/// An error loading a model from a checkpoint; the message names the checkpoint and the tensor.
public struct ModelLoadError: Error, CustomStringConvertible, LocalizedError {
    public let description: String
    public init(_ description: String) { self.description = description }
    public var errorDescription: String? { description }
}

/// Which positions' logits a forward returns. The final norm and the output head run only on those positions:
/// the head is the widest product of a small model, so a caller that reads a few positions asks for those.
public enum LogitsSelection: Sendable, Equatable {
    /// Every position of every row: `[batch·seqLen, vocab]`.
    case all
    /// The last new position of each row: `[batch, vocab]`.
    case last
    /// Positions `ranges[b]` (indices among the row's `seqLen` new tokens) of each batch row `b`, one range per row:
    /// `[Σ ranges[b].count, vocab]`, row 0's positions first, each row's in order.
    case positions([Range<Int>])

    /// Indices into the forward's `[batch·seqLen]` hidden rows whose logits the selection asks for, in output order.
    /// Throws when `.positions` does not give one range within `0..<seqLen` per row.
    public func hiddenRows(batch: Int, seqLen: Int) throws -> [Int] {
        switch self {
        case .all: return Array(0..<(batch * seqLen))
        case .last: return (0..<batch).map { $0 * seqLen + seqLen - 1 }
        case .positions(let ranges):
            guard ranges.count == batch else {
                throw ModelLoadError("forward: logits asked for \(ranges.count) rows' positions, but the batch has \(batch) rows")
            }
            var rows: [Int] = []
            for (b, range) in ranges.enumerated() {
                guard range.lowerBound >= 0, range.upperBound <= seqLen else {
                    throw ModelLoadError("forward: logits asked for positions \(range) of row \(b), outside its \(seqLen) new tokens")
                }
                rows.append(contentsOf: range.map { b * seqLen + $0 })
            }
            return rows
        }
    }

    /// The selection for batch rows `rows` of the forward (expert parallelism splits a batch by rows).
    public func forBatchRows(_ rows: Range<Int>) -> LogitsSelection {
        guard case .positions(let ranges) = self else { return self }
        return .positions(Array(ranges[rows]))
    }

    /// Logits rows the selection yields for batch rows `rows` of `seqLen` new tokens each.
    public func logitsRowCount(batchRows rows: Range<Int>, seqLen: Int) -> Int {
        switch self {
        case .all: return rows.count * seqLen
        case .last: return rows.count
        case .positions(let ranges): return ranges[rows].reduce(0) { $0 + $1.count }
        }
    }
}

/// The facts about a model that code outside its family needs: sizes for buffers and checks, which layers
/// route, and how. Each family fills it from its own args.
public struct ModelShape: Sendable, Equatable {
    /// TorchTitan module name of the family (`deepseek_v3`, `qwen3`, `gpt_oss`, …).
    public var family: String
    public var vocabSize: Int
    public var dim: Int
    public var layers: Int
    /// Indices of the MoE layers, ascending.
    public var moeLayers: [Int]
    /// Routed experts per MoE layer and experts chosen per token.
    public var numExperts: Int
    public var topK: Int
    public var numSharedExperts: Int
    /// Whether the router has a load-balancing expert bias (selection only).
    public var hasExpertBias: Bool
    /// `softmax` or `sigmoid`.
    public var scoreFunction: RouterConfig.ScoreFunction
    /// Node-limited routing: expert groups, and how many of them a token may use (nil: no groups).
    public var numExpertGroups: Int?
    public var numLimitedGroups: Int?
    public var maxSeqLen: Int
    public var attentionHeads: Int

    public init(
        family: String, vocabSize: Int, dim: Int, layers: Int, moeLayers: [Int], numExperts: Int, topK: Int,
        numSharedExperts: Int, hasExpertBias: Bool, scoreFunction: RouterConfig.ScoreFunction,
        numExpertGroups: Int? = nil, numLimitedGroups: Int? = nil, maxSeqLen: Int, attentionHeads: Int
    ) {
        self.family = family; self.vocabSize = vocabSize; self.dim = dim; self.layers = layers
        self.moeLayers = moeLayers; self.numExperts = numExperts; self.topK = topK
        self.numSharedExperts = numSharedExperts; self.hasExpertBias = hasExpertBias
        self.scoreFunction = scoreFunction; self.numExpertGroups = numExpertGroups
        self.numLimitedGroups = numLimitedGroups; self.maxSeqLen = maxSeqLen; self.attentionHeads = attentionHeads
    }

    public func isMoELayer(_ layer: Int) -> Bool { moeLayers.contains(layer) }
}

/// Numerical switches that depend on the code that trained the model, not on the weights.
public struct Numerics: Sendable, Equatable {
    /// YaRN frequency correction and the mscale² softmax adjustment.
    public var yarn: Bool
    /// eps of the final RMSNorm: v0.2.x builds it as `nn.RMSNorm(dim)` (float32 machine epsilon).
    public var finalNormEps: Float
    /// How the two were decided, for messages and results files.
    public var origin: String

    public init(yarn: Bool, finalNormEps: Float, origin: String) {
        self.yarn = yarn
        self.finalNormEps = finalNormEps
        self.origin = origin
    }
}

/// Weight bytes the benchmarks divide by.
public struct ModelFootprint: Sendable, Equatable {
    /// Every weight in its stored dtype (embedding and output head included; under expert parallelism the
    /// routed experts this process holds).
    public var weightBytes: Int
    /// Weights one token's forward reads: dense weights, routers, `top_k` routed and the shared experts per
    /// MoE layer, one embedding row and the output head — the decode roofline's numerator.
    public var activeWeightBytesPerToken: Int
    /// Held by this process: everything but the routed experts (replicated on every rank) …
    public var heldDenseBytes: Int
    /// … and the routed experts (only the local ones under expert parallelism).
    public var heldExpertBytes: Int

    public init(weightBytes: Int, activeWeightBytesPerToken: Int, heldDenseBytes: Int, heldExpertBytes: Int) {
        self.weightBytes = weightBytes; self.activeWeightBytesPerToken = activeWeightBytesPerToken
        self.heldDenseBytes = heldDenseBytes; self.heldExpertBytes = heldExpertBytes
    }
}

/// Parameter counts in TorchTitan's buckets (buffers such as expert_bias are not parameters).
public typealias ParameterCounts = ModelArgs.ParameterCounts

/// TorchTitan's accounting of a model (`get_nparams_and_flops`): each family supplies its own formulas.
public protocol ModelAccounting {
    /// Parameters in TorchTitan's buckets.
    func parameterCounts() -> ParameterCounts
    var totalParameters: Int { get }
    /// Parameters one token passes through (routed experts scaled by top_k / num_experts).
    var activeParameters: Int { get }
    /// The FLOPs per token TorchTitan logs for this family at training seq_len `seqLen` (its own formula).
    func trainingFlopsPerToken(seqLen: Int) -> Int
    /// Forward-only FLOPs per token at sequence length `seqLen` (docs/METRICS.md).
    func forwardFlopsPerToken(seqLen: Int) -> Double
}

/// A causal language model of one family, as moe-eval runs it: what every consumer (scoring, benchmarks,
/// serving, expert parallelism, cost accounting) may use. A family implements it in its own folder
/// (docs/ARCHITECTURE.md, "Adding a family").
public protocol CausalLanguageModel: AnyObject, Sendable, ModelAccounting {
    var shape: ModelShape { get }
    /// The streams each layer's attention caches; `KVCache(model:batch:capacity:)` allocates from it.
    var kvCacheLayout: KVCacheLayout { get }
    /// Set when the routed experts are spread over the processes of a group (ExpertParallel.swift).
    var expertParallel: ExpertParallelGroup? { get }
    /// The MoE blocks in layer order, each with its layer index: what a rank without tokens still runs
    /// under expert parallelism.
    var moeBlocks: [(layer: Int, block: MoEBlock)] { get }
    var footprint: ModelFootprint { get }
    /// Numerical switches that depend on the code that trained the model (recorded in results files).
    var numerics: Numerics { get }

    /// Logits for `tokens` (`batch` rows of `seqLen` new ids, row-major), causal within each row.
    /// Without a cache each row is a sequence starting at position 0. With a cache the new tokens continue the
    /// cached rows at position `cache.length`, and their keys and values are appended to it.
    /// Returns `[batch·seqLen, vocab]` for `.all`, `[batch, vocab]` for `.last`, the asked positions' rows for
    /// `.positions`.
    /// An implementation starts with `forwardPreamble`, which checks the input and hands the batch to the
    /// expert-parallel group when there is one.
    func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?, logits: LogitsSelection,
        observer: RoutingObserver?
    ) throws -> Tensor
}

extension CausalLanguageModel {
    public var totalParameters: Int { parameterCounts().total }
    public var activeParameters: Int { parameterCounts().active(topK: shape.topK, numExperts: shape.numExperts) }
}

extension ModelArgs: ModelAccounting {}

extension CausalLanguageModel {
    // Defaults for callers holding `any CausalLanguageModel` (a requirement cannot declare them). The two
    // never both apply: one has no observer, the other needs a non-optional one.
    public func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache? = nil,
        logits selection: LogitsSelection = .all
    ) throws -> Tensor {
        try forward(tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection, observer: nil)
    }

    public func forward(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache? = nil,
        logits selection: LogitsSelection = .all, observer: RoutingObserver
    ) throws -> Tensor {
        try forward(
            tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection,
            observer: Optional(observer))
    }

    /// The start of every family's forward: the input checks, then, under expert parallelism, the group's
    /// forward (`forwardExpertParallel`), which calls back into `forward` for this rank's share. Returns that
    /// forward's logits, or nil when this call is the one to compute them.
    public func forwardPreamble(
        tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?, logits selection: LogitsSelection,
        observer: RoutingObserver?
    ) throws -> Tensor? {
        try checkForwardInput(tokens: tokens, batch: batch, seqLen: seqLen, cache: cache)
        guard let group = expertParallel, !group.runningLocalShare else { return nil }
        return try forwardExpertParallel(
            group, tokens: tokens, batch: batch, seqLen: seqLen, cache: cache, logits: selection, observer: observer)
    }

    /// The checks every family's forward makes first: the token grid, the vocabulary, and the cache.
    public func checkForwardInput(tokens: [Int32], batch: Int, seqLen: Int, cache: KVCache?) throws {
        guard batch > 0, seqLen > 0, tokens.count == batch * seqLen else {
            throw ModelLoadError("forward: \(tokens.count) tokens do not form \(batch) rows of \(seqLen)")
        }
        let vocab = shape.vocabSize
        if let bad = tokens.first(where: { $0 < 0 || Int($0) >= vocab }) {
            throw ModelLoadError("forward: token id \(bad) is outside the vocabulary (0..<\(vocab))")
        }
        if let cache {
            guard cache.batch == batch, cache.layout == kvCacheLayout else {
                throw ModelLoadError("forward: KV cache was made for batch \(cache.batch), not \(batch)")
            }
            guard cache.length + seqLen <= cache.capacity else {
                throw ModelLoadError("forward: \(cache.length + seqLen) positions exceed the KV cache capacity \(cache.capacity)")
            }
        }
    }
}
