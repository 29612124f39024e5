import Foundation

/// RoPE inverse frequencies per rotated pair, in fp32 as torch computes them.
public enum RoPEFrequencies {
    /// `1 / θ^(2i/d)` for `i < d/2`.
    public static func plain(dim: Int, theta: Double) -> [Float] {
        let base = Float(theta)
        return (0..<(dim / 2)).map { i in 1 / powf(base, Float(2 * i) / Float(dim)) }
    }

    /// YaRN's "NTK-by-parts" blend (TorchTitan 0.3.0 `_yarn_inv_freq`): pairs below the correction dim of
    /// `betaFast` rotations keep their frequency, pairs above that of `betaSlow` are divided by `factor`, and a
    /// linear ramp blends between. `truncate` floors/ceils the range (DeepSeek); gpt-oss keeps it fractional.
    /// The attention scaling YaRN also implies is not applied here (the caller folds it into the softmax scale).
    public static func yarn(dim: Int, theta: Double, factor: Double, betaFast: Double, betaSlow: Double,
                            originalSeqLen: Int, truncate: Bool) -> [Float] {
        let base = plain(dim: dim, theta: theta)
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

/// cos/sin of `position · frequency` for a run of positions, applied in the rotate-half layout (`CosSinRoPE`,
/// HF's `rotate_half`): pair `i` is `(x[i], x[i + d/2])`.
public struct RotateHalfRoPETable: Sendable {
    public let pairs: Int
    public let firstPosition: Int
    let cos: [Float]
    let sin: [Float]

    /// Angles for positions `positions` (fp32 products as torch's `outer(t, inv_freq)`).
    public init(frequencies: [Float], positions: Range<Int>) {
        pairs = frequencies.count
        firstPosition = positions.lowerBound
        var c = [Float](repeating: 0, count: positions.count * pairs), s = c
        for (row, p) in positions.enumerated() {
            for i in 0..<pairs {
                let angle = Float(p) * frequencies[i]
                c[row * pairs + i] = Foundation.cos(angle)
                s[row * pairs + i] = Foundation.sin(angle)
            }
        }
        cos = c
        sin = s
    }

    /// Rotates one head vector of `2·pairs` values in place: `x·cos + rotate_half(x)·sin`.
    @inline(__always)
    public func apply(_ x: UnsafeMutablePointer<Float>, position: Int) {
        let row = (position - firstPosition) * pairs
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                for i in 0..<pairs {
                    let a = x[i], b = x[i + pairs]
                    let ci = c[row + i], si = s[row + i]
                    x[i] = a * ci - b * si
                    x[i + pairs] = b * ci + a * si
                }
            }
        }
    }
}
