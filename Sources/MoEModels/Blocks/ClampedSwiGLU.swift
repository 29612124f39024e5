import Foundation
import MoETensor

/// gpt-oss's expert MLP (TorchTitan 0.3.0 `GptOssGroupedExperts` + `swiglu`): `h = x·W1ᵀ + b1` with the gate
/// and linear halves interleaved in h's columns (gate even, linear odd), the gate clamped above at `limit`, the
/// linear part to ±`limit`, `y = g·σ(α·g)·(lin + 1)`, then `out = y·W2ᵀ + b2`.
public enum ClampedSwiGLU {
    /// `y[r, j]` from the interleaved `h[r, 2j]` (gate) and `h[r, 2j+1]` (linear), for `rows × hidden` outputs.
    public static func activate(_ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float,
                                into y: UnsafeMutablePointer<Float>) {
        for r in 0..<rows {
            let input = h + r * 2 * hidden, output = y + r * hidden
            for j in 0..<hidden {
                let gate = min(input[2 * j], limit)
                let linear = min(max(input[2 * j + 1], -limit), limit)
                let glu = gate / (1 + expf(-alpha * gate))
                // torch.addcmul(out_glu, out_glu, x_linear): the +1 as an addition, in the same order.
                output[j] = glu + glu * linear
            }
        }
    }

    /// Adds a `[width]` bias to each of `rows` rows.
    @inline(__always)
    static func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows {
            let row = x + r * width
            for c in 0..<width { row[c] += bias[c] }
        }
    }

    /// One expert over `rows` gathered token rows on the calling thread: `out[rows, D]` (overwritten).
    /// `w1` is `[2F, D]`, `w2` `[D, F]`; `scratch` holds at least `rows · 3F` floats.
    public static func expert(_ x: UnsafePointer<Float>, rows: Int, dim: Int, hidden: Int,
                              w1: Weight, b1: UnsafePointer<Float>, w2: Weight, b2: UnsafePointer<Float>,
                              alpha: Float, limit: Float, scratch: UnsafeMutablePointer<Float>,
                              into out: UnsafeMutablePointer<Float>) {
        let h = scratch, y = scratch + rows * 2 * hidden
        Linear.applyColumns(x, m: rows, lda: dim, w1, columns: 0..<(2 * hidden), h, ldy: 2 * hidden, accumulate: false)
        addBias(b1, to: h, rows: rows, width: 2 * hidden)
        activate(h, rows: rows, hidden: hidden, alpha: alpha, limit: limit, into: y)
        Linear.applyColumns(y, m: rows, lda: hidden, w2, columns: 0..<dim, out, ldy: dim, accumulate: false)
        addBias(b2, to: out, rows: rows, width: dim)
    }
}
