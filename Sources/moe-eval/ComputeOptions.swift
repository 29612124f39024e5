import ArgumentParser
import MoEModels

/// `--compute` of the commands that run the model (run, bench, serve, forward).
struct ComputeOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Precision of the matrix products: fp32, bf16 or auto.",
            discussion:
                "bf16 multiplies bf16-rounded activations by bf16 weights with fp32 accumulation (PyTorch's bf16 CPU path); the router gate, norms, softmax, RoPE and attention scores stay fp32. auto is bf16 when the weights are bf16 and the CPU has AVX512_BF16 or AMX, fp32 otherwise. Default: auto for bench, which measures the speed this CPU gives the weights; fp32 for run, serve and forward, whose scores and logits must not depend on which CPU computed them (results compared across machines and against lm-eval) — ask for bf16 or auto there to trade that for speed (docs/MODEL.md gives the logit error and routed-expert agreement). bf16 on weights with no bf16 matrix is an error.",
            valueName: "fp32|bf16|auto"))
    var compute: String?

    func validate() throws {
        if let compute, ComputeChoice(rawValue: compute) == nil {
            throw ValidationError("--compute must be fp32, bf16 or auto, not \"\(compute)\"")
        }
    }

    /// The choice given, else the command's default.
    func choice(default fallback: ComputeChoice) -> ComputeChoice {
        compute.flatMap(ComputeChoice.init(rawValue:)) ?? fallback
    }
}
