import Foundation
import MoETensor

/// cos/sin of `position · frequency` for every position and rotated pair (torch.polar in fp32).
struct RopeTable {
    let pairs: Int
    let cos: [Float]
    let sin: [Float]

    init(frequencies: [Float], positions: Int) {
        pairs = frequencies.count
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

    /// Rotates consecutive pairs `(x[2i], x[2i+1])` (TorchTitan's complex-number RoPE in DeepSeek-V3).
    func apply(_ x: UnsafeMutablePointer<Float>, position: Int) {
        cos.withUnsafeBufferPointer { c in
            sin.withUnsafeBufferPointer { s in
                Ops.ropeInterleaved(x, pairs: pairs, cos: c.baseAddress! + position * pairs, sin: s.baseAddress! + position * pairs)
            }
        }
    }
}
