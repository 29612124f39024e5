import CKernels

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Row-wise kernels on raw fp32 buffers. Each works in place or into a caller-provided buffer,
/// so a forward pass allocates per layer at most, never per element or token.
public enum Ops {
    /// `out = x · rsqrt(mean(x²) + eps) · weight` per row of length `dim` (torch `RMSNorm`, fp32).
    public static func rmsNorm(
        _ x: UnsafePointer<Float>, rows: Int, dim: Int, stride: Int? = nil,
        weight: UnsafePointer<Float>, eps: Float, into out: UnsafeMutablePointer<Float>, outStride: Int? = nil
    ) {
        let xs = stride ?? dim, os = outStride ?? dim
        let sx = SendableConstPointer(x), so = SendablePointer(out), sw = SendableConstPointer(weight)
        Compute.parallelFor(rows, minChunk: 64) { r in
            moe_rmsnorm_row(sx.pointer + r * xs, sw.pointer, eps, so.pointer + r * os, dim)
        }
    }

    /// One row of `rmsNorm`, on the calling thread.
    @inline(__always)
    public static func rmsNormRow(
        _ x: UnsafePointer<Float>, weight: UnsafePointer<Float>, eps: Float,
        into out: UnsafeMutablePointer<Float>, dim: Int
    ) {
        moe_rmsnorm_row(x, weight, eps, out, dim)
    }

    @inline(__always)
    public static func silu(_ v: Float) -> Float { v / (1 + expf(-v)) }

    /// `gate[i] = silu(gate[i]) · up[i]` — the SwiGLU middle step, in place on `gate`.
    public static func siluMul(_ gate: UnsafeMutablePointer<Float>, _ up: UnsafePointer<Float>, count: Int) {
        let sg = SendablePointer(gate), su = SendableConstPointer(up)
        let chunk = 4096
        Compute.parallelFor((count + chunk - 1) / chunk, minChunk: 4) { c in
            let lo = c * chunk, hi = min(count, lo + chunk)
            moe_silu_mul(sg.pointer + lo, su.pointer + lo, hi - lo)
        }
    }

    /// Numerically stable softmax of one row of `n`, in place (a row of -inf stays as it is).
    @inline(__always)
    public static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ n: Int) {
        moe_softmax_row(row, n)
    }

    /// Softmax of `count` scores in place with `sink` as one more logit of the normaliser, one that weights
    /// nothing (gpt-oss's attention sinks).
    @inline(__always)
    public static func softmaxRow(_ row: UnsafeMutablePointer<Float>, _ count: Int, sink: Float) {
        var peak = sink
        for i in 0..<count { peak = max(peak, row[i]) }
        var sum = expf(sink - peak)
        for i in 0..<count {
            row[i] = expf(row[i] - peak)
            sum += row[i]
        }
        let inverse = 1 / sum
        for i in 0..<count { row[i] *= inverse }
    }

    /// `TensorBackend.causalSoftmax` on the calling thread: per row, zeros outside the keys its query sees,
    /// softmax (with the sink, when given) over the ones it does.
    public static func causalSoftmax(
        _ scores: UnsafeMutablePointer<Float>, rows: Int, width: Int, firstQueryPosition: Int,
        firstKeyPosition: Int, window: Int?, sink: Float?
    ) {
        for i in 0..<rows {
            let row = scores + i * width, position = firstQueryPosition + i
            let lo = max(firstKeyPosition, window.map { position - $0 + 1 } ?? 0) - firstKeyPosition
            let hi = position + 1 - firstKeyPosition
            row.update(repeating: 0, count: lo)
            if let sink { softmaxRow(row + lo, hi - lo, sink: sink) } else { softmaxRow(row + lo, hi - lo) }
            (row + hi).update(repeating: 0, count: width - hi)
        }
    }

    @inline(__always)
    public static func sigmoid(_ v: Float) -> Float { 1 / (1 + expf(-v)) }

    /// `y[i] = σ(x[i])` for `count` values.
    @inline(__always)
    public static func sigmoid(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] = sigmoid(x[i]) }
    }

    /// Adds the `width` values of `bias` to each of `rows` rows of `x`.
    @inline(__always)
    public static func addBias(_ bias: UnsafePointer<Float>, to x: UnsafeMutablePointer<Float>, rows: Int, width: Int) {
        for r in 0..<rows {
            let row = x + r * width
            for c in 0..<width { row[c] += bias[c] }
        }
    }

    /// `y[i] += x[i]` for `count` values.
    @inline(__always)
    public static func add(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, count: Int) {
        for i in 0..<count { y[i] += x[i] }
    }

    /// Rotates interleaved pairs `(x[2i], x[2i+1])` by the angle of position `pos` — DeepSeek's complex-number
    /// RoPE layout. `cos`/`sin` are `[positions, pairs]` tables.
    @inline(__always)
    public static func ropeInterleaved(
        _ x: UnsafeMutablePointer<Float>, pairs: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        for i in 0..<pairs {
            let a = x[2 * i], b = x[2 * i + 1]
            let c = cos[i], s = sin[i]
            x[2 * i] = a * c - b * s
            x[2 * i + 1] = a * s + b * c
        }
    }

    /// Rotates pairs `(x[i], x[i + pairs])` by the angle of one position — rotate-half RoPE
    /// (`x·cos + rotate_half(x)·sin` with `rotate_half(x) = (-x₂, x₁)`).
    @inline(__always)
    public static func ropeRotateHalf(
        _ x: UnsafeMutablePointer<Float>, pairs: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        for i in 0..<pairs {
            let a = x[i], b = x[i + pairs]
            x[i] = a * cos[i] - b * sin[i]
            x[i + pairs] = b * cos[i] + a * sin[i]
        }
    }

    /// Indices of the `k` largest of `values[0..<n]`, largest first; ties go to the lower index.
    /// Writes into `indices` (capacity k). Linear in n·k, which beats sorting for MoE's small k.
    @inline(__always)
    public static func topK(_ values: UnsafePointer<Float>, _ n: Int, _ k: Int, into indices: UnsafeMutablePointer<Int32>) {
        var filled = 0
        for i in 0..<n {
            let v = values[i]
            if filled == k && !(v > values[Int(indices[k - 1])]) { continue }
            var pos = filled == k ? k - 1 : filled
            if filled < k { filled += 1 }
            while pos > 0 && v > values[Int(indices[pos - 1])] {
                indices[pos] = indices[pos - 1]
                pos -= 1
            }
            indices[pos] = Int32(i)
        }
    }
}
