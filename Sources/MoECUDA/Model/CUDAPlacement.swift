import Foundation
import MoECheckpoint
import MoEModels

/// Runs DeepSeek-V3 models on a CUDA device (`DeepSeekV3CUDA`); other families are refused with one line.
public final class CUDAPlacement: ModelPlacement, @unchecked Sendable {
    public let runtime: CUDAForwardRuntime

    public init(runtime: CUDAForwardRuntime) { self.runtime = runtime }

    public var description: String { "CUDA on \(runtime.name)" }

    public func place(_ model: any CausalLanguageModel, weights source: WeightSource) throws -> any CausalLanguageModel {
        guard let deepSeek = model as? DeepSeekV3 else {
            throw ModelLoadError(
                "--device cuda runs only the deepseek_v3 family so far; this model is \(model.shape.family) (use --device cpu)")
        }
        return try DeepSeekV3CUDA(uploading: deepSeek, weights: source, runtime: runtime)
    }
}

/// `--device`: where the forward runs. `auto` is CUDA when the loader finds a device of compute capability ≥ 8.0,
/// else the CPU, and says which.
public enum ComputeDevice: String, CaseIterable, Sendable {
    case cpu, cuda, auto

    /// The placement for this choice (nil: the CPU). `probe` finds the device (the loader's `CUDAContext.probe`);
    /// `note` receives the line saying what `auto` chose. `--device cuda` without a usable device throws one line
    /// with the loader's whole report.
    public func placement(
        probe: () -> Result<CUDAContext, CUDAUnavailable> = { CUDAContext.probe() }, note: (String) -> Void
    ) throws -> (any ModelPlacement)? {
        switch self {
        case .cpu:
            return nil
        case .cuda:
            switch probe() {
            case .success(let context): return CUDAPlacement(runtime: try CUDAForwardRuntime(context: context))
            case .failure(let unavailable): throw CUDAForwardError("--device cuda: \(Self.oneLine(unavailable.description))")
            }
        case .auto:
            switch probe() {
            case .success(let context):
                let placement = CUDAPlacement(runtime: try CUDAForwardRuntime(context: context))
                note("device: auto chose \(placement.description)")
                return placement
            case .failure(let unavailable):
                note("device: auto chose the CPU (\(Self.oneLine(unavailable.description)))")
                return nil
            }
        }
    }

    /// The loader's multi-line report (every path tried) as one line.
    static func oneLine(_ text: String) -> String {
        let lines = text.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }.filter { !$0.isEmpty }
        var joined = ""
        for line in lines {
            if !joined.isEmpty { joined += joined.hasSuffix(":") ? " " : "; " }
            joined += line
        }
        return joined
    }
}
