import Foundation
import MoETensor

/// lm-eval 0.4.13's metric arithmetic (`lm_eval/api/metrics.py`, `ConfigurableTask.process_results`,
/// `Group.aggregate`), with Python's evaluation order: sums run left to right from 0 as CPython ≤ 3.11's
/// `sum()` does (3.12+ compensates its float sums; results then differ in the last bits only).
/// docs/METRICS.md ("Benchmark accuracy") states each formula once.
enum TaskMetrics {
    static func sum<C: Collection>(_ values: C) -> Double where C.Element == Double {
        var total = 0.0
        for v in values { total += v }
        return total
    }

    /// `mean(arr) = sum(arr) / len(arr)`.
    static func mean(_ values: [Double]) -> Double { sum(values) / Double(values.count) }

    /// `sample_stddev`: √(Σ(x − mean)² / (n − 1)).
    static func sampleStddev(_ values: [Double]) -> Double {
        let mu = mean(values)
        var squares = 0.0
        for v in values { squares += (v - mu) * (v - mu) }
        return (squares / Double(values.count - 1)).squareRoot()
    }

    /// `mean_stderr = sample_stddev / √n`.
    static func meanStderr(_ values: [Double]) -> Double {
        sampleStddev(values) / Double(values.count).squareRoot()
    }

    /// `perplexity(lls) = exp(−mean(lls))` over per-document log-likelihoods.
    static func perplexity(_ logLikelihoods: [Double]) -> Double { Foundation.exp(-mean(logLikelihoods)) }

    /// `bootstrap_stderr(perplexity, lls, iters)`: chunk i of ⌊iters/1000⌋ draws 1000 resamples with
    /// `Random(i).choices(lls, k=n)`; the stderr is the sample stddev of all resampled perplexities.
    static func bootstrapPerplexityStderr(_ logLikelihoods: [Double], iterations: Int = 100_000) -> Double {
        let chunkSize = min(1000, iterations), chunks = iterations / chunkSize
        let n = logLikelihoods.count
        let replicates = UnsafeMutableBufferPointer<Double>.allocate(capacity: max(chunks * chunkSize, 1))
        defer { replicates.deallocate() }
        let out = SendablePointer(replicates.baseAddress!)
        logLikelihoods.withUnsafeBufferPointer { items in
            let source = SendableConstPointer(items.baseAddress!)
            Compute.parallelFor(chunks) { chunk in
                var random = PythonRandom(seed: chunk)
                for draw in 0..<chunkSize {
                    var total = 0.0
                    for _ in 0..<n { total += source.pointer[random.choiceIndex(n)] }
                    out.pointer[chunk * chunkSize + draw] = Foundation.exp(-(total / Double(n)))
                }
            }
        }
        return sampleStddev(Array(replicates.prefix(chunks * chunkSize)))
    }

    /// `weighted_perplexity(items) = exp(−Σll / Σcount)` (word_perplexity, byte_perplexity).
    static func weightedPerplexity(_ items: [(logLikelihood: Double, count: Int)]) -> Double {
        Foundation.exp(-weightedMean(items))
    }

    /// `bits_per_byte(items) = −Σll / Σbytes / ln 2`.
    static func bitsPerByte(_ items: [(logLikelihood: Double, count: Int)]) -> Double {
        -weightedMean(items) / Foundation.log(2.0)
    }

    static func weightedMean(_ items: [(logLikelihood: Double, count: Int)]) -> Double {
        sum(items.map(\.logLikelihood)) / Double(items.reduce(0) { $0 + $1.count })
    }

    /// `aggregate_subtask_metrics(values, sizes, weight_by_size=True) = Σ value·size / Σ size`.
    static func sizeWeightedMean(_ values: [Double], sizes: [Int]) -> Double {
        sum(zip(values, sizes).map { $0 * Double($1) }) / Double(sizes.reduce(0, +))
    }

    /// `pooled_sample_stderr`: √( Σ (nᵢ−1)·seᵢ²·nᵢ / (Σnᵢ − k) / Σnᵢ ).
    static func pooledStderr(_ stderrs: [Double], sizes: [Int]) -> Double {
        let total = sizes.reduce(0, +)
        let pooledVariance =
            sum(zip(stderrs, sizes).map { Double($1 - 1) * ($0 * $0) * Double($1) })
            / Double(total - sizes.count)
        return (pooledVariance / Double(total)).squareRoot()
    }

    /// `np.argmax`: the first maximum, or the first NaN if there is one.
    static func argmax(_ values: [Double]) -> Int {
        var best = 0
        for (i, v) in values.enumerated() {
            if v.isNaN { return i }
            if v > values[best] { best = i }
        }
        return best
    }
}

/// Per-document metric values, as `process_results` returns them.
struct DocumentMetrics: Sendable {
    var acc: Double?
    var accNorm: Double?
    /// lambada's `perplexity` item: the document's log-likelihood.
    var logLikelihood: Double?
    /// Rolling documents: (log-likelihood, words) and (log-likelihood, bytes).
    var words: Int?
    var bytes: Int?
    var gold: Int?

    /// `multiple_choice`: acc = [argmax ll == gold], acc_norm = [argmax ll/len(choice) == gold], with the
    /// choice length in code points and without the target delimiter; an out-of-range gold scores 0.
    static func multipleChoice(logLikelihoods: [Double], choices: [String], gold: Int) -> DocumentMetrics {
        let lengths = choices.map { Double(PythonText.length($0)) }
        let pred = TaskMetrics.argmax(logLikelihoods)
        let predNorm = TaskMetrics.argmax(zip(logLikelihoods, lengths).map { $0 / $1 })
        let effectiveGold = gold < choices.count ? gold : -100
        return DocumentMetrics(
            acc: pred == effectiveGold ? 1 : 0, accNorm: predNorm == effectiveGold ? 1 : 0,
            gold: effectiveGold)
    }
}
