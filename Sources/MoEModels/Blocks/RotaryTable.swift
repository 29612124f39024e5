import Foundation
import MoETensor

/// cos/sin of `position · frequency` for every position and rotated pair (fp32, as torch computes its
/// RoPE cache), applied in one of the two pairings TorchTitan uses. The frequencies are injected, so a
/// family decides them (plain `1/θ^(2i/d)`, YaRN-corrected, …) and the attention block only rotates.
public struct RotaryTable: Sendable {
    /// Which elements of a head form a rotated pair.
    public typealias Pairing = RotaryPairing

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

    /// Rotates `vectors` heads of `2·pairs` values, `stride` apart from `x`, by the angles of `position`
    /// (< `positions`), in place, on `backend`.
    public func apply(
        _ x: UnsafeMutablePointer<Float>, vectors: Int = 1, stride: Int = 0, position: Int, backend: some TensorBackend
    ) {
        let n = pairs
        cos.withUnsafeBufferPointer { cosTable in
            sin.withUnsafeBufferPointer { sinTable in
                backend.rope(
                    x, vectors: vectors, stride: stride, pairs: n, pairing: pairing,
                    cos: cosTable.baseAddress! + position * n, sin: sinTable.baseAddress! + position * n)
            }
        }
    }
}
