import Foundation
import MoETensor
import Testing

@testable import MoEModels

/// The GQA block against a direct transcription of TorchTitan 0.3.0's `GQAttention` math (q/k/v projections,
/// per-head RMSNorm before rotate-half RoPE, causal softmax, kv head `i / group`), in prefill and token-by-token
/// decode through the cache, with and without biases and QK norm.
@Suite struct GroupedQueryAttentionTests {
    struct Generator {
        var state: UInt64
        mutating func next() -> Float {
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Float(Int64(bitPattern: state >> 11) % 2000 - 1000) / 1000
        }
        mutating func values(_ n: Int, scale: Float = 1) -> [Float] { (0..<n).map { _ in next() * scale } }
    }

    static func weight(_ values: [Float], _ shape: [Int]) throws -> Weight {
        let owner = Tensor(shape: [values.count], values: values)
        return try Weight(
            dtype: .float32, shape: shape, bytes: UnsafeRawBufferPointer(start: owner.data, count: values.count * 4), owner: owner)
    }

    /// Reference: one sequence, all positions, in Double.
    static func reference(
        x: [Float], tokens: Int, dim: Int, h: Int, kvh: Int, hd: Int, wq: [Float], wk: [Float], wv: [Float], wo: [Float],
        biases: [[Float]]?, qNorm: [Float]?, kNorm: [Float]?, theta: Double, eps: Double
    ) -> [Double] {
        func project(_ w: [Float], _ out: Int, _ bias: [Float]?) -> [[Double]] {
            (0..<tokens).map { t in
                (0..<out).map { o in (0..<dim).reduce(Double(bias?[o] ?? 0)) { $0 + Double(w[o * dim + $1]) * Double(x[t * dim + $1]) } }
            }
        }
        var q = project(wq, h * hd, biases?[0]), k = project(wk, kvh * hd, biases?[1]), v = project(wv, kvh * hd, biases?[2])
        func normAndRotate(_ m: inout [[Double]], heads: Int, norm: [Float]?) {
            for t in 0..<tokens {
                for head in 0..<heads {
                    var x = Array(m[t][(head * hd)..<((head + 1) * hd)])
                    if let norm {
                        let ms = x.reduce(0) { $0 + $1 * $1 } / Double(hd)
                        x = x.enumerated().map { $0.element / (ms + eps).squareRoot() * Double(norm[$0.offset]) }
                    }
                    var y = x
                    for j in 0..<(hd / 2) {
                        let angle = Double(t) / pow(theta, Double(2 * j) / Double(hd))
                        y[j] = x[j] * cos(angle) - x[j + hd / 2] * sin(angle)
                        y[j + hd / 2] = x[j + hd / 2] * cos(angle) + x[j] * sin(angle)
                    }
                    m[t].replaceSubrange((head * hd)..<((head + 1) * hd), with: y)
                }
            }
        }
        normAndRotate(&q, heads: h, norm: qNorm)
        normAndRotate(&k, heads: kvh, norm: kNorm)
        var context = [[Double]](repeating: [Double](repeating: 0, count: h * hd), count: tokens)
        for t in 0..<tokens {
            for head in 0..<h {
                let kv = head / (h / kvh)
                var scores = (0...t).map { s in
                    (0..<hd).reduce(0.0) { $0 + q[t][head * hd + $1] * k[s][kv * hd + $1] } / Double(hd).squareRoot()
                }
                let top = scores.max()!
                scores = scores.map { exp($0 - top) }
                let total = scores.reduce(0, +)
                for s in 0...t { for c in 0..<hd { context[t][head * hd + c] += scores[s] / total * v[s][kv * hd + c] } }
            }
        }
        var out: [Double] = []
        for t in 0..<tokens {
            for o in 0..<dim {
                out.append((0..<(h * hd)).reduce(Double(biases?[3][o] ?? 0)) { $0 + Double(wo[o * h * hd + $1]) * context[t][$1] })
            }
        }
        return out
    }

    @Test(arguments: [false, true])
    func prefillAndDecodeMatchTheReference(withBiasesAndNoNorm: Bool) throws {
        let dim = 24, h = 6, kvh = 2, hd = 8, tokens = 7, batch = 2
        var g = Generator(state: withBiasesAndNoNorm ? 11 : 5)
        let wq = g.values(h * hd * dim, scale: 0.3), wk = g.values(kvh * hd * dim, scale: 0.3)
        let wv = g.values(kvh * hd * dim, scale: 0.3), wo = g.values(dim * h * hd, scale: 0.3)
        var block = GroupedQueryAttention(
            dim: dim, nHeads: h, nKVHeads: kvh, headDim: hd,
            wq: try Self.weight(wq, [h * hd, dim]), wk: try Self.weight(wk, [kvh * hd, dim]),
            wv: try Self.weight(wv, [kvh * hd, dim]), wo: try Self.weight(wo, [dim, h * hd]),
            softmaxScale: 1 / Float(hd).squareRoot())
        var biases: [[Float]]? = nil, qNorm: [Float]? = nil, kNorm: [Float]? = nil
        if withBiasesAndNoNorm {
            biases = [g.values(h * hd), g.values(kvh * hd), g.values(kvh * hd), g.values(dim)]
            block.qBias = biases![0]; block.kBias = biases![1]; block.vBias = biases![2]; block.oBias = biases![3]
        } else {
            qNorm = g.values(hd).map { 1 + $0 / 2 }; kNorm = g.values(hd).map { 1 + $0 / 2 }
            block.qNorm = qNorm; block.kNorm = kNorm; block.normEps = 1e-6
        }
        let theta = 1e4
        let x = (0..<batch).map { _ in g.values(tokens * dim) }
        let expected = x.map {
            Self.reference(
                x: $0, tokens: tokens, dim: dim, h: h, kvh: kvh, hd: hd, wq: wq, wk: wk, wv: wv, wo: wo,
                biases: biases, qNorm: qNorm, kNorm: kNorm, theta: theta, eps: 1e-6)
        }
        let rope = RotaryTable(frequencies: RotaryTable.frequencies(theta: theta, rotatedDims: hd), positions: tokens, pairing: .rotateHalf)

        let layout = KVCacheLayout(layers: [GroupedQueryAttention.cacheStreams(kvHeads: kvh, headDim: hd)])
        let prefillCache = KVCache(layout: layout, batch: batch, capacity: tokens)
        let hidden = Tensor(shape: [batch * tokens, dim])
        block.apply(
            Tensor(shape: [batch * tokens, dim], values: x.flatMap { $0 }), batch: batch, newTokens: tokens, past: 0,
            rope: rope, store: prefillCache.layers[0], addInto: hidden)
        var worst = 0.0
        for b in 0..<batch {
            for i in 0..<(tokens * dim) { worst = max(worst, abs(Double(hidden.data[b * tokens * dim + i]) - expected[b][i])) }
        }
        #expect(worst < 1e-4, "prefill max |Δ| \(worst)")

        // Three tokens of prefill, then one at a time through the cache.
        let cache = KVCache(layout: layout, batch: batch, capacity: tokens)
        var worstDecode = 0.0
        var position = 0
        for count in [3, 1, 1, 1, 1] {
            let chunk = x.flatMap { Array($0[(position * dim)..<((position + count) * dim)]) }
            let out = Tensor(shape: [batch * count, dim])
            block.apply(
                Tensor(shape: [batch * count, dim], values: chunk), batch: batch, newTokens: count, past: position,
                rope: rope, store: cache.layers[0], addInto: out)
            cache.length += count
            for b in 0..<batch {
                for i in 0..<(count * dim) {
                    worstDecode = max(worstDecode, abs(Double(out.data[b * count * dim + i]) - expected[b][position * dim + i]))
                }
            }
            position += count
        }
        #expect(worstDecode < 1e-4, "decode max |Δ| \(worstDecode)")
    }
}
