import Foundation
import MoECheckpoint

/// What `convert` asks of a family (`ModelFamily.hfConversion`): the model the options name, written as the
/// family's Hugging Face architecture.
public struct HFConversionRequest: Sendable {
    public var spec: ModelSpec
    public var dtype: HFExportDType
    /// Bytes per safetensors file (a tensor larger than that gets a file of its own).
    public var maxShardSize: Int
    /// Set: write bench's deterministic random weights for the spec's args instead of reading a checkpoint
    /// (`convert --random-weights`: models for side-by-side benchmarks).
    public var randomWeights: RandomWeights?

    public init(spec: ModelSpec, dtype: HFExportDType, maxShardSize: Int, randomWeights: RandomWeights? = nil) {
        self.spec = spec; self.dtype = dtype; self.maxShardSize = maxShardSize; self.randomWeights = randomWeights
    }

    public struct RandomWeights: Sendable {
        /// Layers instead of the args' `n_layers` (dense layers capped to it), e.g. 16B shapes on 2 layers.
        public var layers: Int?
        public init(layers: Int? = nil) { self.layers = layers }
    }

    /// Throws for a family that writes no random weights.
    public func refuseRandomWeights(family: String) throws {
        guard randomWeights != nil else { return }
        throw ModelArgsError(message: "--random-weights writes deepseek_v3 models only, not \(family)")
    }
}

/// Token ids a `config.json` names, read by the caller from the tokenizer it copies beside the weights.
public struct HFSpecialTokens: Sendable {
    public var bos: Int?
    public var eos: Int?

    public init(bos: Int? = nil, eos: Int? = nil) { self.bos = bos; self.eos = eos }
}

/// A conversion its family has checked (model args against the checkpoint's tensors, options it cannot
/// honour) before anything is written, so that a refusal leaves no output folder behind.
public struct HFConversion {
    /// The checkpoint as the family opened it, for messages.
    public let sourceDescription: String
    /// The train config the model args came from: its `hf_assets_path` names the tokenizer to copy.
    public let trainConfig: TrainConfig?
    /// Writes the safetensors shards, `model.safetensors.index.json` and `config.json` into `folder` (which the
    /// caller stages and renames into place); `progress(done, total)` after each tensor.
    public let write: (_ folder: URL, _ specialTokens: HFSpecialTokens, _ progress: ((Int, Int) -> Void)?) throws -> HFConversionSummary

    public init(
        sourceDescription: String, trainConfig: TrainConfig?,
        write: @escaping (URL, HFSpecialTokens, ((Int, Int) -> Void)?) throws -> HFConversionSummary
    ) {
        self.sourceDescription = sourceDescription; self.trainConfig = trainConfig; self.write = write
    }
}

/// What a conversion wrote, as `convert` reports it.
public struct HFConversionSummary: Sendable {
    public var tensors: Int
    public var bytes: Int
    public var files: Int
    /// torch names of the dtypes written, sorted.
    public var dtypes: [String]
    /// The architecture config.json names and where the model args came from, e.g.
    /// "qwen3_moe (Qwen3MoeForCausalLM), model args from HF config …".
    public var config: String
    /// What transformers will compute differently from TorchTitan, one line each.
    public var notes: [String]

    public init(tensors: Int, bytes: Int, files: Int, dtypes: [String], config: String, notes: [String]) {
        self.tensors = tensors; self.bytes = bytes; self.files = files; self.dtypes = dtypes
        self.config = config; self.notes = notes
    }

    /// A summary of an `HFExportPlan` that was written.
    public init(plan: HFExportPlan, config: String, notes: [String]) {
        self.init(
            tensors: plan.tensors.count, bytes: plan.totalSize, files: plan.shards.count,
            dtypes: Set(plan.tensors.map(\.dtype.torchName)).sorted(), config: config, notes: notes)
    }
}

extension ModelSpec {
    /// The options that set DeepSeek-V3 numerics or flavors, which other families' args already fix: a family
    /// that cannot honour them refuses them by name instead of ignoring them.
    public var deepSeekOnlyOptions: [String] {
        var set: [String] = []
        if flavor != nil { set.append("--flavor") }
        if era != nil { set.append("--era") }
        if yarn != nil { set.append("--yarn") }
        if finalNormEps != nil { set.append("--final-norm-eps") }
        return set
    }

    /// Throws when the spec sets an option `family` has no use for (`deepSeekOnlyOptions`).
    public func refuseDeepSeekOnlyOptions(family: String) throws {
        let set = deepSeekOnlyOptions
        guard !set.isEmpty else { return }
        throw ModelArgsError(
            message:
                "\(set.joined(separator: ", ")) \(set.count == 1 ? "applies" : "apply") to deepseek_v3 models only; the \(family) model args fix what \(set.count == 1 ? "it sets" : "they set") (drop \(set.count == 1 ? "it" : "them"))"
        )
    }
}
