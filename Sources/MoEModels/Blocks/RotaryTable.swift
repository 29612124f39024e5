import Foundation
import MoETensor

/// cos/sin of `position · frequency` for every position and rotated pair (fp32, as torch computes its
/// RoPE cache), applied in one of the two pairings TorchTitan uses. The frequencies are injected, so a
/// family decides them (plain `1/θ^(2i/d)`, YaRN-corrected, …) and the attention block only rotates.
public struct RotaryTable: Sendable {
    /// Which elements of a head form a rotated pair.
    public enum Pairing: Sendable {
        /// `(x[i], x[i + d/2])` — `CosSinRoPE` (rotate-half), Qwen3, gpt-oss, HF Llama-style models.
        case rotateHalf
        /// `(x[2i], x[2i+1])` — DeepSeek's complex-number layout.
        case interleaved
    }

    public let pairing: Pairing
    /// Rotated pairs per head: half the rotated width.
    public let pairs: Int
    public let positions: Int
    public let cos: [Float]
    public let sin: [Float]

    /// Plain RoPE frequencies `1/θ^(2i/d)` for a rotated width `d`.
    public static func frequencies(theta: Double, rotatedDims: Int) -> [Float] {
        (0..<(rotatedDims / 2)).map { i in 1 / Float(pow(theta, Double(Float(2 * i) / Float(rotatedDims)))) }
    }

    public init(frequencies: [Float], positions: Int, pairing: Pairing) {
        self.pairing = pairing
        pairs = frequencies.count
        self.positions = positions
        var c = [Float](repeating: 0, count: positions * pairs), s = c
        for p in 0..<positions {
            for i in 0..<pairs {
                let angle = Float(p) * frequencies[i]
                c[p * pairs + i] = Foundation.cos(angle)
                s[p * pairs + i] = Foundation.sin(angle)
            }
        }
        cos = c
        sin = s
    }

    /// Rotates the `2·pairs` values at `x` by the angles of `position` (< `positions`), in place.
    public func apply(_ x: UnsafeMutablePointer<Float>, position: Int) {
        let n = pairs
        cos.withUnsafeBufferPointer { cosTable in
            sin.withUnsafeBufferPointer { sinTable in
                let c = cosTable.baseAddress! + position * n, s = sinTable.baseAddress! + position * n
                switch pairing {
                case .interleaved:
                    Ops.ropeInterleaved(x, pairs: n, cos: c, sin: s)
                case .rotateHalf:
                    // x·cos + rotate_half(x)·sin with rotate_half(x) = (-x₂, x₁).
                    for i in 0..<n {
                        let a = x[i], b = x[i + n]
                        x[i] = a * c[i] - b * s[i]
                        x[i + n] = b * c[i] + a * s[i]
                    }
                }
            }
        }
    }
}
