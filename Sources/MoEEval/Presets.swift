/// The seed's evaluation presets (`eval_moe_model.py`), with their counts unchanged.
public struct Preset: Sendable, Equatable {
    public let name: String
    /// Routing analysis: sequences × tokens per sequence.
    public let routingSamples: Int
    public let routingSeqLen: Int
    /// Inference benchmark: timed iterations × new tokens each (0 iterations = skipped), after warm-ups.
    public let inferenceIterations: Int
    public let inferenceNewTokens: Int
    public let warmupIterations: Int
    /// Benchmark tasks and the per-task example limit (nil = every example); empty = no accuracy run.
    public let lmEvalTasks: [String]
    public let lmEvalLimit: Int?

    public static let all: [Preset] = [
        Preset(
            name: "30s", routingSamples: 10, routingSeqLen: 256, inferenceIterations: 0, inferenceNewTokens: 0,
            warmupIterations: 0, lmEvalTasks: [], lmEvalLimit: nil),
        Preset(
            name: "1min", routingSamples: 10, routingSeqLen: 256, inferenceIterations: 1, inferenceNewTokens: 16,
            warmupIterations: 3, lmEvalTasks: ["hellaswag"], lmEvalLimit: 5),
        Preset(
            name: "5min", routingSamples: 30, routingSeqLen: 256, inferenceIterations: 3, inferenceNewTokens: 32,
            warmupIterations: 3, lmEvalTasks: ["hellaswag"], lmEvalLimit: 20),
        Preset(
            name: "15min", routingSamples: 50, routingSeqLen: 512, inferenceIterations: 5, inferenceNewTokens: 64,
            warmupIterations: 3, lmEvalTasks: ["hellaswag"], lmEvalLimit: 100),
        Preset(
            name: "full", routingSamples: 100, routingSeqLen: 512, inferenceIterations: 10, inferenceNewTokens: 128,
            warmupIterations: 3, lmEvalTasks: ["mmlu", "hellaswag", "arc_easy"], lmEvalLimit: nil),
    ]

    public static func named(_ name: String) -> Preset? { all.first { $0.name == name } }
    public static var names: [String] { all.map(\.name) }
}
