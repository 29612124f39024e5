import Foundation
import MoEModels
import Testing

@testable import MoEEval

/// `num_flops_per_token` is TorchTitan's `get_nparams_and_flops` (0.2.2 and 0.3.0 agree for DeepSeek-V3) at the
/// training seq_len, and MFU divides by the peak of every process.
@Suite struct ComputationalCostTests {
    /// debugmodel at seq_len 2048, by hand from TorchTitan's formula
    /// `6·(nparams_dense − nparams_embedding + router + shared + experts·top_k // num_experts) + 6·L·H·(dn+dr+dv)·seq`:
    /// attention per layer wq 256·3072 + wkv_a 256·576 + kv_norm 512 + wkv_b 512·4096 + wo 2048·256 = 3,555,840,
    /// plus two 256 norms → 6 layers 21,338,112; dense FFN 3·256·1024 = 786,432; embedding and lm_head 2·524,288;
    /// final norm 256 → dense 23,173,376 (embedding 524,288). Five MoE layers: router 5·2048 = 10,240, shared
    /// 5·3·256·512 = 1,966,080, experts 5·3·8·256·256 = 7,864,320 → ·3//8 = 2,949,120.
    /// Matmul params 23,173,376 − 524,288 + 10,240 + 1,966,080 + 2,949,120 = 27,574,528; ·6 = 165,447,168.
    /// Attention 6·6·16·320·2048 = 377,487,360. Total 542,934,528.
    @Test func torchTitanFormulaAtTheTrainingSeqLen() throws {
        var args = try #require(Flavors.args(for: "debugmodel"))
        args.maxSeqLen = 2048
        let cost = ComputationalCost.compute(
            args: args, flopsSeqLen: 2048, measuredTokens: 2560, measuredSeqLen: 256,
            measuredSeconds: 1, sgemmPeaks: [1e9])
        #expect(cost.numFlopsPerToken == 542_934_528)
        #expect(cost.flopsSeqLen == 2048)
        #expect(cost.totalFlops == 542_934_528.0 * 2048)
        // Only the attention term moves with seq_len: 6·L·H·320 per position.
        let shorter = ComputationalCost.compute(
            args: args, flopsSeqLen: 512, measuredTokens: 2560, measuredSeqLen: 256,
            measuredSeconds: 1, sgemmPeaks: [1e9])
        #expect(cost.numFlopsPerToken - shorter.numFlopsPerToken == 6 * 6 * 16 * 320 * (2048 - 512))
    }

    @Test func mfuUsesThePeakOfAllProcesses() throws {
        let args = try #require(Flavors.args(for: "debugmodel"))
        let one = ComputationalCost.compute(
            args: args, flopsSeqLen: 2048, measuredTokens: 2560, measuredSeqLen: 256,
            measuredSeconds: 2, sgemmPeaks: [100e9])
        let two = ComputationalCost.compute(
            args: args, flopsSeqLen: 2048, measuredTokens: 2560, measuredSeqLen: 256,
            measuredSeconds: 2, sgemmPeaks: [100e9, 60e9])
        #expect(two.cpuSgemmPeakGflopsPerSec == 160 && two.sgemmPeakProcesses == 2 && one.sgemmPeakProcesses == 1)
        #expect(abs(two.mfu - two.achievedGflopsPerSec / 160) < 1e-12)
        #expect(abs(one.mfu / two.mfu - 1.6) < 1e-12)
    }
}
