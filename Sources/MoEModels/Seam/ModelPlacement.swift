import MoECheckpoint

/// Where a loaded model runs when it is not the CPU (`--device`): a backend outside this module (MoECUDA)
/// provides one, and `ModelLoader.load` hands it each model it builds.
public protocol ModelPlacement: Sendable {
    /// "CUDA on NVIDIA H100 80GB HBM3 (sm_90)", for messages.
    var description: String { get }
    /// The model to run instead of `model`, whose weights `source` holds; throws (one line) for a model it cannot run.
    func place(_ model: any CausalLanguageModel, weights source: WeightSource) throws -> any CausalLanguageModel
}
