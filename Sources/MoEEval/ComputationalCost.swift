import Foundation
import MoEModels
import MoETensor

/// What a forward pass costs: parameters, FLOPs per token, and the achieved rate against the machine's peak.
public struct ComputationalCost: Codable, Sendable {
    /// TorchTitan's training FLOPs per token (`get_nparams_and_flops`, 6N + attention) at the training seq_len
    /// `flops_seq_len`, the number TorchTitan logs for the same model.
    public var numFlopsPerToken: Int
    /// `num_flops_per_token × flops_seq_len`, as the seed computed it.
    public var totalFlops: Double
    public var tflops: Double
    /// True active parameters per token (the seed's scripts wrote the total here).
    public var activeParamsBillions: Double
    public var totalParamsBillions: Double
    /// Null on CPU, as TorchTitan's GPU table has no entry.
    public var gpuPeakFlops: Double?
    public var flopsSeqLen: Int
    /// Forward-only FLOPs per token at the measured sequence length (docs/METRICS.md).
    public var forwardFlopsPerToken: Double
    public var measuredForwardTokens: Int
    public var measuredForwardSeconds: Double
    public var measuredForwardTflops: Double
    public var achievedGflopsPerSec: Double
    /// The sgemm peak of all processes together: under mpirun every rank measures its own at the same time and
    /// the peaks are summed, since the achieved rate counts every rank's work.
    public var cpuSgemmPeakGflopsPerSec: Double
    /// Processes whose sgemm peaks `cpu_sgemm_peak_gflops_per_sec` sums (1 without mpirun).
    public var sgemmPeakProcesses: Int
    /// Achieved forward FLOP/s ÷ measured sgemm peak (of all processes).
    public var mfu: Double

    enum CodingKeys: String, CodingKey {
        case numFlopsPerToken = "num_flops_per_token", totalFlops = "total_flops", tflops
        case activeParamsBillions = "active_params_billions", totalParamsBillions = "total_params_billions"
        case gpuPeakFlops = "gpu_peak_flops", flopsSeqLen = "flops_seq_len"
        case forwardFlopsPerToken = "forward_flops_per_token", measuredForwardTokens = "measured_forward_tokens"
        case measuredForwardSeconds = "measured_forward_seconds", measuredForwardTflops = "measured_forward_tflops"
        case achievedGflopsPerSec = "achieved_gflops_per_sec", cpuSgemmPeakGflopsPerSec = "cpu_sgemm_peak_gflops_per_sec"
        case sgemmPeakProcesses = "sgemm_peak_processes", mfu
    }

    /// Matrix-multiply parameters a token passes through (embedding lookup and norms excluded).
    public static func activeMatmulParameters(_ args: ModelArgs) -> Int { args.activeMatmulParameters() }

    /// Forward FLOPs per token at sequence length `seqLen` (the formula lives with the family).
    public static func forwardFlopsPerToken(_ args: ModelArgs, seqLen: Int) -> Double {
        args.forwardFlopsPerToken(seqLen: seqLen)
    }

    /// `flopsSeqLen` is the training seq_len (TorchTitan passes `training.seq_len`); `sgemmPeaks` holds one measured
    /// peak per process whose work `measuredTokens`/`measuredSeconds` cover. The formulas are the family's own.
    public static func compute(
        model: some ModelAccounting, flopsSeqLen: Int, measuredTokens: Int, measuredSeqLen: Int,
        measuredSeconds: Double, sgemmPeaks: [Double]
    ) -> ComputationalCost {
        let sgemmPeak = sgemmPeaks.reduce(0, +)
        let perToken = model.trainingFlopsPerToken(seqLen: flopsSeqLen)
        let forward = model.forwardFlopsPerToken(seqLen: measuredSeqLen)
        let measuredFlops = forward * Double(measuredTokens)
        let achieved = measuredSeconds > 0 ? measuredFlops / measuredSeconds : 0
        return ComputationalCost(
            numFlopsPerToken: perToken, totalFlops: Double(perToken) * Double(flopsSeqLen),
            tflops: Double(perToken) * Double(flopsSeqLen) / 1e12,
            activeParamsBillions: Double(model.activeParameters) / 1e9, totalParamsBillions: Double(model.totalParameters) / 1e9,
            gpuPeakFlops: nil, flopsSeqLen: flopsSeqLen, forwardFlopsPerToken: forward, measuredForwardTokens: measuredTokens,
            measuredForwardSeconds: measuredSeconds, measuredForwardTflops: measuredFlops / 1e12,
            achievedGflopsPerSec: achieved / 1e9, cpuSgemmPeakGflopsPerSec: sgemmPeak / 1e9,
            sgemmPeakProcesses: sgemmPeaks.count, mfu: sgemmPeak > 0 ? achieved / sgemmPeak : 0)
    }

    /// DeepSeek-V3 args (the same numbers as `compute(model:…)` on the model built from them).
    public static func compute(
        args: ModelArgs, flopsSeqLen: Int, measuredTokens: Int, measuredSeqLen: Int,
        measuredSeconds: Double, sgemmPeaks: [Double]
    ) -> ComputationalCost {
        compute(
            model: args, flopsSeqLen: flopsSeqLen, measuredTokens: measuredTokens, measuredSeqLen: measuredSeqLen,
            measuredSeconds: measuredSeconds, sgemmPeaks: sgemmPeaks)
    }

    /// Best of a few large fp32 GEMMs (FLOP/s) with the current thread count: the machine's practical peak.
    public static func measureSgemmPeak(size n: Int = 1024, repeats: Int = 3) -> Double {
        let a = Tensor(shape: [n, n]), b = Tensor(shape: [n, n]), c = Tensor(shape: [n, n])
        for i in 0..<(n * n) { a.data[i] = Float(i % 7) * 0.01; b.data[i] = Float(i % 5) * 0.01 }
        var best = Double.infinity
        for _ in 0..<repeats {
            let start = DispatchTime.now().uptimeNanoseconds
            Linear.sgemm(
                transA: false, transB: true, m: n, n: n, k: n, alpha: 1, a.data, lda: n, b.data, ldb: n,
                beta: 0, c.data, ldc: n)
            best = min(best, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return 2 * Double(n * n * n) / best
    }
}
