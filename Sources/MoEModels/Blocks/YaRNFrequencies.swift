import Foundation

/// RoPE inverse frequencies corrected by YaRN, for a `RotaryTable`.
public enum YaRNFrequencies {
    /// YaRN's "NTK-by-parts" blend (TorchTitan 0.3.0 `_yarn_inv_freq`): pairs below the correction dim of
    /// `betaFast` rotations keep their frequency, pairs above that of `betaSlow` are divided by `factor`, and a
    /// linear ramp blends between. `truncate` floors/ceils the range (DeepSeek); gpt-oss keeps it fractional.
    /// The attention scaling YaRN also implies is not applied here (the caller folds it into the softmax scale).
    public static func frequencies(
        rotatedDims dim: Int, theta: Double, factor: Double, betaFast: Double, betaSlow: Double,
        originalSeqLen: Int, truncate: Bool
    ) -> [Float] {
        let base = RotaryTable.frequencies(theta: theta, rotatedDims: dim)
        func correctionDim(_ rotations: Double) -> Double {
            Double(dim) * log(Double(originalSeqLen) / (rotations * 2 * Double.pi)) / (2 * log(theta))
        }
        var low = correctionDim(betaFast), high = correctionDim(betaSlow)
        if truncate {
            low = floor(low)
            high = ceil(high)
        }
        low = max(low, 0)
        high = min(high, Double(dim - 1))
        if low == high { high += 0.001 }
        let lowF = Float(low), spanF = Float(high - low), factorF = Float(factor)
        return base.enumerated().map { i, frequency in
            let ramp = min(max((Float(i) - lowF) / spanF, 0), 1)
            return frequency / factorF * ramp + frequency * (1 - ramp)
        }
    }
}
