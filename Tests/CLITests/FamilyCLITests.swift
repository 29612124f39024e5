import Foundation
import Testing

/// Every command on the Qwen3-MoE and gpt-oss fp32 fixtures (TorchTitan 0.3.0 saves, 48-token vocabulary).
/// The fixtures carry no tokenizer and no 48-id tokenizer exists in the repository, so `run` routes random token
/// ids (`--routing-input random`) and skips the benchmark tasks; accuracy through the same pipeline is covered on
/// DeepSeek-V3's demo (RunCLITests, PipelineAgreementCLITests). `convert` per family: Qwen3CLITests, GptOssCLITests.
@Suite struct FamilyCLITests {
    struct Fixture: CustomTestStringConvertible, Sendable {
        let family: String
        let variant: String
        /// Fields only this family's model args have (the results file must keep the family's own names).
        let ownFields: [String]
        var testDescription: String { "\(family) \(variant)" }

        var folder: URL { CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/\(family)/\(variant)") }
        var checkpoint: URL { folder.appendingPathComponent("checkpoint") }
        var modelArgs: URL { folder.appendingPathComponent("model_args.json") }
        var modelArguments: [String] { ["--checkpoint", checkpoint.path, "--model-args", modelArgs.path] }
        func args() throws -> [String: Any] { try DistributedCLITests.json(modelArgs) }
    }

    static let qwen3 = Fixture(family: "qwen3", variant: "v030_qwen3_fp32", ownFields: ["qk_norm", "n_kv_heads", "head_dim"])
    static let gptOss = Fixture(
        family: "gpt_oss", variant: "v030_gptoss_fp32",
        ownFields: ["attention_sinks", "sliding_window_size", "swiglu_limit", "qkv_bias"])
    static let all = [qwen3, gptOss]

    /// The one results file `run` wrote into `folder`.
    static func results(in folder: URL) throws -> [String: Any] {
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        #expect(files.count == 1, "\(files)")
        return try DistributedCLITests.json(folder.appendingPathComponent(try #require(files.first)))
    }

    static func runArguments(_ fixture: Fixture, output: URL) -> [String] {
        ["run"] + fixture.modelArguments + [
            "--preset", "30s", "--routing-input", "random", "--skip-lm-eval", "--threads", "1",
            "--output-dir", output.path,
        ]
    }

    /// routing_stats per MoE layer, cost with the family's FLOP formula, the family's model args and numerics.
    @Test(arguments: all) func runWritesCompleteResults(fixture: Fixture) throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try CLI.run(Self.runArguments(fixture, output: dir))
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.results(in: dir)
        let args = try fixture.args()
        let moe = try #require(args["moe_args"] as? [String: Any])
        let numExperts = try #require(moe["num_experts"] as? Int), topK = try #require(moe["top_k"] as? Int)
        let layers = try #require(args["n_layers"] as? Int), maxSeqLen = try #require(args["max_seq_len"] as? Int)

        let run = try #require(results["moe_eval"] as? [String: Any])
        let input = try #require(run["routing_input"] as? [String: Any])
        let samples = try #require(input["samples"] as? Int), seqLen = try #require(input["seq_len"] as? Int)
        #expect(samples == 10 && seqLen == min(256, maxSeqLen), "preset 30s: 10 × 256 tokens, capped at max_seq_len \(maxSeqLen)")
        let stats = try #require(results["routing_stats"] as? [String: Any])
        for layer in 0..<layers {
            let entry = try #require(stats["layer_\(layer)"] as? [String: Any], "layer_\(layer) missing: \(stats.keys.sorted())")
            let loads = try #require(entry["tokens_per_expert_distribution"] as? [Int])
            #expect(loads.count == numExperts)
            #expect(loads.reduce(0, +) == samples * seqLen * topK, "layer \(layer): Σ loads \(loads.reduce(0, +))")
        }

        let recorded = try #require(results["model_args"] as? [String: Any])
        for field in fixture.ownFields { #expect(recorded[field] != nil, "model_args lacks \(field): \(recorded.keys.sorted())") }
        #expect(recorded["dim"] as? Int == args["dim"] as? Int && recorded["vocab_size"] as? Int == 48)
        let numerics = try #require(run["numerics"] as? [String: Any])
        #expect(numerics["origin"] != nil, "\(numerics)")
        #expect(run["family"] as? String == fixture.family, "\(run)")

        let cost = try #require(results["computational_cost"] as? [String: Any])
        #expect(cost["flops_seq_len"] as? Int == maxSeqLen)
        #expect((cost["num_flops_per_token"] as? Int ?? 0) > 0 && (cost["measured_forward_tokens"] as? Int) == samples * seqLen)
        if fixture.family == "qwen3" {
            // TorchTitan 0.3.0's get_nparams_and_flops on this fixture (torchtitan030_flops.json): 108,864 at
            // seq_len 8; its attention term 12·layers·heads·head_dim·t adds 12·2·4·16·(64 − 8) at seq_len 64.
            #expect(cost["num_flops_per_token"] as? Int == 108_864 + 12 * 2 * 4 * 16 * (64 - 8), "\(cost)")
        }
    }

    /// The preset's routing window (256) exceeds the qwen3 fixture's max_seq_len (64): capped, with a note in the
    /// results and on stderr; a gpt-oss copy of the args with max_seq_len 128 is capped at 128 likewise.
    @Test func routingWindowIsCappedAtMaxSeqLen() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try CLI.run(Self.runArguments(Self.qwen3, output: dir.appendingPathComponent("qwen3")))
        #expect(r.status == 0, "\(r.stderr)")
        let note = "routing seq_len 256 of preset 30s capped at the model's max_seq_len 64"
        #expect(r.stderr.contains(note), "\(r.stderr)")
        let run = try #require(try Self.results(in: dir.appendingPathComponent("qwen3"))["moe_eval"] as? [String: Any])
        #expect((run["routing_warnings"] as? [String] ?? []).contains(note), "\(run)")

        var args = try Self.gptOss.args()
        args["max_seq_len"] = 128
        let shorter = dir.appendingPathComponent("gpt_oss_128.json")
        try JSONSerialization.data(withJSONObject: args).write(to: shorter)
        let out = dir.appendingPathComponent("gpt_oss")
        let g = try CLI.run([
            "run", "--checkpoint", Self.gptOss.checkpoint.path, "--model-args", shorter.path, "--preset", "30s",
            "--routing-input", "random", "--skip-lm-eval", "--threads", "1", "--output-dir", out.path,
        ])
        #expect(g.status == 0, "\(g.stderr)")
        #expect(g.stderr.contains("capped at the model's max_seq_len 128"), "\(g.stderr)")
        let gptRun = try #require(try Self.results(in: out)["moe_eval"] as? [String: Any])
        #expect((gptRun["routing_input"] as? [String: Any])?["seq_len"] as? Int == 128)
    }

    /// `forward` picks the family from the model args and reproduces TorchTitan's logits.
    @Test(arguments: all) func forwardMatchesTorchTitan(fixture: Fixture) throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("out.json")
        let r = try CLI.run(
            ["forward"] + fixture.modelArguments
                + ["--tokens-file", fixture.folder.appendingPathComponent("tokens.json").path, "--output", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        let ours = try #require(try DistributedCLITests.json(out)["logits"] as? [[[Double]]])
        let reference = try #require(
            try DistributedCLITests.json(fixture.folder.appendingPathComponent("expected.json"))["logits"] as? [[[Double]]])
        let a = Array(ours.joined().joined()), b = Array(reference.joined().joined())
        let worst = a.count == b.count ? zip(a, b).map { abs($0 - $1) }.max() ?? .infinity : .infinity
        let largest = b.map(abs).max() ?? 0
        #expect(!a.isEmpty && worst <= 1e-4 * max(1, largest), "max |dlogit| \(worst) over \(a.count)")
    }

    /// `inspect` reads the checkpoint with the family's key names and reports its parameters and args.
    @Test(arguments: all) func inspectUsesTheFamily(fixture: Fixture) throws {
        let r = try CLI.run(["inspect"] + fixture.modelArguments + ["--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        #expect(report["family"] as? String == fixture.family)
        let tensors = try #require(report["tensors"] as? [[String: Any]])
        #expect(tensors.contains { $0["name"] as? String == "tok_embeddings.weight" && $0["shape"] as? [Int] == [48, 32] })
        let total = try #require(report["total_params"] as? Int), active = try #require(report["active_params"] as? Int)
        #expect(active > 0 && active < total)
        if fixture.family == "qwen3" { #expect(total == 22_240, "TorchTitan's nparams for this fixture (torchtitan030_flops.json)") }
        // Every stored tensor is a parameter counted once, except the load-balancing bias (a buffer in TorchTitan).
        let stored = tensors.filter { !($0["name"] as? String ?? "").contains("expert_bias") }
            .reduce(0) { $0 + (($1["shape"] as? [Int])?.reduce(1, *) ?? 0) }
        #expect(total == stored, "params \(total), stored elements \(stored)")
        let args = try #require(report["model_args"] as? [String: Any])
        for field in fixture.ownFields { #expect(args[field] != nil, "\(field)") }

        let table = try CLI.run(["inspect"] + fixture.modelArguments)
        #expect(
            table.status == 0 && table.stdout.contains("family: \(fixture.family)") && table.stdout.contains("tok_embeddings.weight"),
            "\(table.stdout)\(table.stderr)")
    }

    /// An HF folder names its family in config.json (model_type): the same parameter count as the DCP save.
    @Test(arguments: all) func inspectReadsTheHuggingFaceConfig(fixture: Fixture) throws {
        let hf = try CLI.run(["inspect", "--checkpoint", fixture.folder.appendingPathComponent("hf").path, "--json"])
        let dcp = try CLI.run(["inspect"] + fixture.modelArguments + ["--json"])
        #expect(hf.status == 0 && dcp.status == 0, "\(hf.stderr)\(dcp.stderr)")
        let a = try #require(try JSONSerialization.jsonObject(with: Data(hf.stdout.utf8)) as? [String: Any])
        let b = try #require(try JSONSerialization.jsonObject(with: Data(dcp.stdout.utf8)) as? [String: Any])
        #expect(a["family"] as? String == fixture.family && (a["family_selected_by"] as? String ?? "").contains("model_type"))
        #expect(a["total_params"] as? Int == b["total_params"] as? Int && a["active_params"] as? Int == b["active_params"] as? Int)
    }

    /// Without args, inspect of another family's checkpoint fails clearly rather than guessing DeepSeek-V3 shapes.
    @Test func inspectWithoutArgsNamesTheKeys() throws {
        let r = try CLI.run(["inspect", "--checkpoint", Self.qwen3.checkpoint.path])
        #expect(r.status != 0)
        #expect(r.stderr.contains("q_norm") || r.stderr.contains("k_norm") || r.stderr.contains("qkv_linear"), "\(r.stderr)")
    }

    /// `bench --checkpoint`: prefill and cached decode of the fixture.
    @Test(arguments: all) func benchRunsOnTheCheckpoint(fixture: Fixture) throws {
        let r = try CLI.run(
            ["bench"] + fixture.modelArguments
                + ["--batch", "2", "--seq-len", "16", "--decode-tokens", "4", "--iterations", "1", "--threads", "1", "--json"])
        #expect(r.status == 0, "\(r.stderr)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], "\(r.stdout)")
        #expect((result["prefill_tokens_per_s"] as? Double ?? 0) > 0 && (result["decode_tokens_per_s"] as? Double ?? 0) > 0, "\(result)")
    }

    /// `serve`: one completions request with token ids (the demo tokenizer only serves /tokenize here: its ids
    /// exceed the fixture's 48), greedy, two new tokens inside the vocabulary.
    @Test(arguments: all) func serveAnswersACompletion(fixture: Fixture) throws {
        let server = try ServerUnderTest.start(
            fixture.modelArguments + [
                "--tokenizer", CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path, "--model-name", "fixture",
            ])
        defer { server.stop() }
        let body = "{\"model\":\"fixture\",\"prompt\":[3,17,5,40,2],\"max_tokens\":2,\"temperature\":0,\"logprobs\":1}"
        let answer = try HTTPExchange.send(
            port: server.port,
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)")
        #expect(answer.status == 200, "\(answer)")
        // Greedy: the first new token's logprob is the largest log-softmax of forward's last-position logits.
        let completion = try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any], "\(answer.body)")
        let choice = try #require((completion["choices"] as? [[String: Any]])?.first)
        let served = try #require(((choice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Double])?.first, "\(choice)")
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let tokens = dir.appendingPathComponent("tokens.json"), out = dir.appendingPathComponent("out.json")
        try Data("{\"tokens\": [[3, 17, 5, 40, 2]]}".utf8).write(to: tokens)
        let forward = try CLI.run(["forward"] + fixture.modelArguments + ["--tokens-file", tokens.path, "--output", out.path])
        #expect(forward.status == 0, "\(forward.stderr)")
        let last = try #require((try DistributedCLITests.json(out)["logits"] as? [[[Double]]])?.first?.last)
        let top = last.max() ?? 0
        let logSumExp = top + log(last.map { exp($0 - top) }.reduce(0, +))
        #expect(abs(served - (top - logSumExp)) <= 1e-4, "served logprob \(served), forward's \(top - logSumExp)")
        let outside = "{\"model\":\"fixture\",\"prompt\":[3,48],\"max_tokens\":1}"
        let refused = try HTTPExchange.send(
            port: server.port,
            "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + "Content-Length: \(outside.utf8.count)\r\nConnection: close\r\n\r\n\(outside)")
        #expect(refused.status == 400 && refused.body.contains("outside the model's vocabulary (0..<48)"), "\(refused)")
    }
}

/// `mpirun -np 2` on the family fixtures: gpt-oss's forward (2 of 4 experts per rank) equals one process's, and
/// `run` under mpirun gives one process's routing statistics for both families.
@Suite(.enabled(if: MPI.enabled, MPI.skipReason), .serialized)
struct FamilyDistributedCLITests {
    @Test(arguments: ["v030_gptoss_fp32", "v030_gptoss_bf16"])
    func gptOssExpertParallelForwardMatchesOneProcess(variant: String) throws {
        try MPI.require()
        let dir = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/gpt_oss/\(variant)")
        let (single, parallel, stderr) = try DistributedCLITests.forwardBoth(
            checkpoint: dir.appendingPathComponent("checkpoint"),
            modelArgs: dir.appendingPathComponent("model_args.json"),
            tokens: dir.appendingPathComponent("tokens.json"))
        let c = try DistributedCLITests.compareForward(single, parallel)
        #expect(
            c.count > 0 && c.maxLogitDifference <= DistributedCLITests.logitTolerance, "\(variant): max |dlogit| \(c.maxLogitDifference)")
        #expect(c.sameExperts, "\(variant): routed experts differ")
        #expect(c.maxWeightDifference <= 1e-5)
        #expect(stderr.contains("rank 0: experts 0..<2") && stderr.contains("rank 1: experts 2..<4"), "\(stderr)")
    }

    @Test(arguments: FamilyCLITests.all) func runMatchesOneProcess(fixture: FamilyCLITests.Fixture) throws {
        try MPI.require()
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let a = try CLI.run(FamilyCLITests.runArguments(fixture, output: one))
        #expect(a.status == 0, "\(a.stderr)")
        let b = try MPI.launch(2, FamilyCLITests.runArguments(fixture, output: two))
        #expect(b.status == 0, "\(b.stderr)")
        let single = try FamilyCLITests.results(in: one), parallel = try FamilyCLITests.results(in: two)
        let x = try #require(single["routing_stats"] as? NSDictionary), y = try #require(parallel["routing_stats"] as? NSDictionary)
        #expect(x.count > 0 && x == y, "routing_stats differ between one process and mpirun -np 2")
        let ranks = try #require(
            ((parallel["moe_eval"] as? [String: Any])?["expert_parallel"] as? [String: Any])?["ranks"] as? [[String: Any]])
        #expect(ranks.count == 2)
    }
}
