import Foundation
import Testing

/// `moe-eval convert` on the Qwen3-MoE fixtures: the family is chosen from the model args (`"family": "qwen3"`) or
/// `--module qwen3 --config NAME`, and the output is what TorchTitan's `Qwen3StateDictAdapter.to_hf` wrote for the
/// golden `hf/` copy (byte equality and reading back to TorchTitan's logits: Qwen3HFExportTests).
@Suite struct Qwen3CLITests {
    static let fixtures = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/qwen3")

    static func convert(_ variant: String, _ arguments: [String], to output: URL) throws -> CLI.Result {
        let f = fixtures.appendingPathComponent(variant)
        return try CLI.run(
            [
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path, "--output", output.path,
                "--no-tokenizer", "--quiet",
            ] + arguments)
    }

    @Test func convertWritesQwen3MoeForCausalLM() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf")
        let args = Self.fixtures.appendingPathComponent("v030_qwen3_fp32/model_args.json")
        let r = try Self.convert("v030_qwen3_fp32", ["--model-args", args.path, "--max-shard-size", "40KB"], to: out)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("qwen3_moe (Qwen3MoeForCausalLM)"), "\(r.stdout)")
        let config = try ConvertCLITests.json(out.appendingPathComponent("config.json"))
        #expect(config["model_type"] as? String == "qwen3_moe" && config["architectures"] as? [String] == ["Qwen3MoeForCausalLM"])
        #expect(config["num_experts"] as? Int == 8 && config["head_dim"] as? Int == 16 && config["num_key_value_heads"] as? Int == 2)
        // Every tensor of the golden copy, with its dtype and shape, spread over the shards the index names.
        let golden = try ConvertCLITests.header(Self.fixtures.appendingPathComponent("v030_qwen3_fp32/hf/model.safetensors"))
        let index = try ConvertCLITests.json(out.appendingPathComponent("model.safetensors.index.json"))
        let weightMap = try #require(index["weight_map"] as? [String: String])
        #expect(Set(weightMap.keys) == Set(golden.keys))
        var written: [String: (String, [Int])] = [:]
        for file in Set(weightMap.values) { written.merge(try ConvertCLITests.header(out.appendingPathComponent(file))) { a, _ in a } }
        for (name, (dtype, shape)) in golden {
            #expect(written[name]?.0 == dtype && written[name]?.1 == shape, "\(name)")
        }
    }

    /// The registry config resolves to qwen3_moe_debug's args, which this small fixture does not match: the error names the tensor.
    @Test func registryConfigIsQwen3() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try Self.convert(
            "v030_qwen3_fp32", ["--module", "qwen3", "--config", "qwen3_moe_debug"], to: dir.appendingPathComponent("hf"))
        #expect(r.status != 0)
        #expect(
            r.stderr.contains("tok_embeddings.weight") && r.stderr.contains("[48, 32]") && r.stderr.contains("[2048, 256]"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("hf").path))
    }

    /// A trained load-balancing bias has no place in Qwen3MoeForCausalLM: converted, with a note saying so.
    @Test func nonzeroExpertBiasIsNoted() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let variant = "v030_qwen3_expert_bias_two_process"
        let args = Self.fixtures.appendingPathComponent("\(variant)/model_args.json")
        let r = try Self.convert(variant, ["--model-args", args.path, "--dtype", "bf16"], to: dir.appendingPathComponent("hf"))
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("note: layers.0.moe.expert_bias_E is nonzero"), "\(r.stderr)")
        #expect(r.stdout.contains("(bfloat16)"))
    }

    /// `forward` picks the family from the model args; one process gives TorchTitan's logits.
    @Test func forwardMatchesTorchTitan() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let f = Self.fixtures.appendingPathComponent("v030_qwen3_fp32")
        let out = dir.appendingPathComponent("out.json")
        let r = try CLI.run([
            "forward", "--checkpoint", f.appendingPathComponent("checkpoint").path,
            "--model-args", f.appendingPathComponent("model_args.json").path,
            "--tokens-file", f.appendingPathComponent("tokens.json").path, "--output", out.path,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try #require(try ConvertCLITests.json(out)["logits"] as? [[[Double]]])
        let reference = try #require(try ConvertCLITests.json(f.appendingPathComponent("expected.json"))["logits"] as? [[[Double]]])
        let worst = zip(ours.joined().joined(), reference.joined().joined()).map { abs($0 - $1) }.max() ?? .infinity
        let largest = reference.joined().joined().map(abs).max() ?? 0
        #expect(ours.count == 2 && worst <= 1e-4 * max(1, largest), "max |dlogit| \(worst)")
    }
}

/// `mpirun -np 2` expert parallelism on Qwen3-MoE (4 of 8 experts per rank, the load-balancing bias and the
/// two-file DCP save of v030_qwen3_expert_bias_two_process) against one process.
@Suite(.enabled(if: MPI.enabled, MPI.skipReason), .serialized)
struct Qwen3DistributedCLITests {
    @Test(arguments: ["v030_qwen3_expert_bias_two_process", "v030_qwen3_bf16"])
    func expertParallelForwardMatchesOneProcess(variant: String) throws {
        try MPI.require()
        let dir = Qwen3CLITests.fixtures.appendingPathComponent(variant)
        let (single, parallel, stderr) = try DistributedCLITests.forwardBoth(
            checkpoint: dir.appendingPathComponent("checkpoint"),
            modelArgs: dir.appendingPathComponent("model_args.json"),
            tokens: dir.appendingPathComponent("tokens.json"))
        let c = try DistributedCLITests.compareForward(single, parallel)
        #expect(
            c.count > 0 && c.maxLogitDifference <= DistributedCLITests.logitTolerance, "\(variant): max |dlogit| \(c.maxLogitDifference)")
        #expect(c.sameExperts, "\(variant): routed experts differ")
        #expect(c.maxWeightDifference <= 1e-5)
        #expect(stderr.contains("rank 0: experts 0..<4") && stderr.contains("rank 1: experts 4..<8"), "\(stderr)")
    }
}
