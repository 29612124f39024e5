import Foundation

/// gpt-oss's expert activation (TorchTitan 0.3.0 `GptOssGroupedExperts` + `swiglu`): in `h = x·W1ᵀ + b1` the gate
/// and linear halves are interleaved (gate even columns, linear odd); the gate is clamped above at `limit`, the
/// linear part to ±`limit`, and `y = g·σ(α·g)·(lin + 1)`. The MoE block runs it through
/// `TensorBackend.clampedSwiGLU`; this is the CPU kernel.
public enum ClampedSwiGLU {
    /// `y[r, j]` from the interleaved `h[r, 2j]` (gate) and `h[r, 2j+1]` (linear), for `rows × hidden` outputs.
    public static func activate(
        _ h: UnsafePointer<Float>, rows: Int, hidden: Int, alpha: Float, limit: Float,
        into y: UnsafeMutablePointer<Float>
    ) {
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
}
