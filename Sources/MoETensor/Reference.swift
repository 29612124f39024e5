#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Plain-loop versions of the kernels, in Double, for checking the fast paths on small shapes.
public enum Reference {
    /// `x[m, k] · w[n, k]ᵀ`.
    public static func linear(_ x: [Float], rows m: Int, _ w: [Float], outFeatures n: Int) -> [Float] {
        let k = x.count / max(m, 1)
        var y = [Float](repeating: 0, count: m * n)
        for i in 0..<m {
            for j in 0..<n {
                var sum = 0.0
                for c in 0..<k { sum += Double(x[i * k + c]) * Double(w[j * k + c]) }
                y[i * n + j] = Float(sum)
            }
        }
        return y
    }

    public static func rmsNorm(_ x: [Float], dim: Int, weight: [Float], eps: Double) -> [Float] {
        var y = x
        for r in 0..<(x.count / dim) {
            var ss = 0.0
            for i in 0..<dim { ss += Double(x[r * dim + i]) * Double(x[r * dim + i]) }
            let inv = 1 / (ss / Double(dim) + eps).squareRoot()
            for i in 0..<dim { y[r * dim + i] = Float(Double(x[r * dim + i]) * inv * Double(weight[i])) }
        }
        return y
    }

    public static func softmax(_ x: [Float]) -> [Float] {
        let m = Double(x.max() ?? 0)
        let e = x.map { exp(Double($0) - m) }
        let s = e.reduce(0, +)
        return e.map { Float($0 / s) }
    }

    /// Indices of the k largest values, largest first, ties to the lower index.
    public static func topK(_ x: [Float], _ k: Int) -> [Int] {
        Array(x.indices.sorted { x[$0] > x[$1] || (x[$0] == x[$1] && $0 < $1) }.prefix(k))
    }
}
