import Foundation
import Testing

/// `moe-eval run` on a reference fixture: the seed's results schema, determinism, and bad input.
@Suite struct RunCLITests {
    static let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_sigmoid_groups_yarn")
    static var baseArguments: [String] {
        [
            "run", "--checkpoint", variant.appendingPathComponent("checkpoint").path,
            "--model-args", variant.appendingPathComponent("model_args.json").path,
            "--routing-input", "random", "--quiet",
        ]
    }

    func results(in folder: URL) throws -> [[String: Any]] {
        let files = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }.sorted()
        return try files.map {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent($0))) as? [String: Any])
        }
    }

    @Test func resultsFollowTheSeedSchema() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let r = try CLI.run(Self.baseArguments + ["--preset", "30s", "--output-dir", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("results written to \(out.path)/eval_results_"))
        let json = try #require(try results(in: out).first)
        let seedKeys: Set = [
            "routing_stats", "inference_performance", "computational_cost", "lm_eval_results", "walltime_seconds",
            "checkpoint_dir", "config", "model_args", "eval_timestamp", "output_file",
        ]
        // moe-eval's additions: the run record, and the routed experts of the first routing tokens (agreement).
        #expect(Set(json.keys) == seedKeys.union(["moe_eval", "routed_experts"]))
        let routing = try #require(json["routing_stats"] as? [String: Any])
        let aggregate = try #require(routing["aggregate"] as? [String: Any])
        for key in ["avg_gini_coefficient", "avg_coefficient_of_variation", "avg_expert_utilization_rate", "num_moe_layers"] {
            #expect(aggregate[key] is NSNumber, "aggregate.\(key)")
        }
        #expect(aggregate["num_moe_layers"] as? Int == 2)
        for layer in ["layer_2", "layer_3"] {
            let stats = try #require(routing[layer] as? [String: Any], "\(layer)")
            for key in [
                "gini_coefficient", "coefficient_of_variation", "expert_utilization_rate", "mean_tokens_per_expert",
                "tokens_per_expert_distribution", "total_tokens_routed",
            ] {
                #expect(stats[key] != nil, "\(layer).\(key)")
            }
            // Σ counts = samples × seq_len × top_k token→expert assignments.
            let counts = try #require(stats["tokens_per_expert_distribution"] as? [Int])
            #expect(counts.reduce(0, +) == 10 * 256 * 2)
        }
        let cost = try #require(json["computational_cost"] as? [String: Any])
        for key in ["total_flops", "tflops", "active_params_billions", "num_flops_per_token"] { #expect(cost[key] is NSNumber, "\(key)") }
        #expect(cost.keys.contains("gpu_peak_flops"))
        #expect((json["output_file"] as? String)?.hasPrefix(out.path) == true)
        let timestamp = try #require(json["eval_timestamp"] as? String)
        #expect(timestamp.range(of: #"^\d{8}_\d{6}$"#, options: .regularExpression) != nil)
        #expect((json["moe_eval"] as? [String: Any])?["preset"] as? String == "30s")
    }

    @Test func inferencePresetFillsTheSeedKeys() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        // The fixture's vocabulary has 160 ids; TorchTitan's test tokenizer maps ASCII letters to their byte
        // values, so the seed's prompts stay inside it.
        let tokenizer = CLI.repoRoot.appendingPathComponent("../shared/data/tokenizers/torchtitan_test_tokenizer").standardized
        try #require(FileManager.default.fileExists(atPath: tokenizer.path), "needs ../shared/data beside the repository")
        let r = try CLI.run(
            Self.baseArguments + ["--preset", "1min", "--skip-lm-eval", "--tokenizer", tokenizer.path, "--output-dir", out.path])
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try results(in: out).first)
        let perf = try #require(json["inference_performance"] as? [String: Any])
        for key in ["latency_ms", "throughput_tokens_per_sec", "memory_allocated_gb", "memory_reserved_gb"] {
            #expect((perf[key] as? Double ?? -1) > 0, "\(key)")
        }
        #expect(perf["iterations"] as? Int == 1 && perf["new_tokens"] as? Int == 16 && perf["warmup_iterations"] as? Int == 3)
    }

    @Test func sameInputsAndSeedGiveIdenticalRoutingStatistics() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        for _ in 0..<2 { #expect(try CLI.run(Self.baseArguments + ["--preset", "30s", "--output-dir", out.path]).status == 0) }
        try #expect(CLI.run(Self.baseArguments + ["--preset", "30s", "--seed", "7", "--output-dir", out.path]).status == 0)
        let files = try results(in: out)
        #expect(files.count == 3, "each run writes its own file, none overwritten")
        let routing = files.map { try! JSONSerialization.data(withJSONObject: $0["routing_stats"]!, options: .sortedKeys) }
        let seeds = files.map { ($0["moe_eval"] as? [String: Any])?["seed"] as? Int }
        let seed1337 = zip(routing, seeds).filter { $0.1 == 1337 }.map(\.0)
        #expect(seed1337.count == 2 && seed1337[0] == seed1337[1])
        let seed7 = zip(routing, seeds).first { $0.1 == 7 }!.0
        #expect(seed7 != seed1337[0])
    }

    @Test func unknownPresetIsAUsageError() throws {
        let r = try CLI.run(Self.baseArguments + ["--preset", "2min"])
        #expect(r.status != 0 && r.stderr.contains("unknown preset \"2min\" (known: 30s, 1min, 5min, 15min, full)"))
    }

    @Test func configThatDisagreesWithTheCheckpoint() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let config = out.appendingPathComponent("train.toml")
        try Data("[model]\nname = \"deepseek_v3\"\nflavor = \"debugmodel\"\n[training]\nseq_len = 256\n".utf8).write(to: config)
        let r = try CLI.run([
            "run", "--checkpoint", Self.variant.appendingPathComponent("checkpoint").path, "--config", config.path,
            "--routing-input", "random", "--preset", "30s", "--quiet", "--output-dir", out.path,
        ])
        #expect(r.status == 1)
        #expect(r.stderrLines.count == 1 && r.stderr.contains("has shape") && r.stderr.contains("model args imply"), "\(r.stderr)")
        #expect(try results(in: out).isEmpty)
    }

    @Test func emptyDataFile() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let data = out.appendingPathComponent("empty.txt")
        try Data("  \n\n".utf8).write(to: data)
        let tokenizer = CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3")
        let r = try CLI.run([
            "run", "--checkpoint", Self.variant.appendingPathComponent("checkpoint").path,
            "--model-args", Self.variant.appendingPathComponent("model_args.json").path,
            "--tokenizer", tokenizer.path, "--data", data.path, "--preset", "30s", "--quiet", "--output-dir", out.path,
        ])
        #expect(r.status == 1 && r.stderr.contains("\(data.path): routing data is empty"), "\(r.stderr)")
    }

    @Test func malformedJSONLData() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let data = out.appendingPathComponent("c4.jsonl")
        try Data("{\"text\": \"fine\"}\n{\"txt\": \"no text field\"}\n".utf8).write(to: data)
        let r = try CLI.run([
            "run", "--checkpoint", Self.variant.appendingPathComponent("checkpoint").path,
            "--model-args", Self.variant.appendingPathComponent("model_args.json").path,
            "--tokenizer", CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path,
            "--data", data.path, "--preset", "30s", "--quiet", "--output-dir", out.path,
        ])
        #expect(r.status == 1 && r.stderr.contains("line 2 has no \"text\" string field"), "\(r.stderr)")
    }

    @Test func unwritableOutputDirectoryFailsBeforeLoading() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let blocker = out.appendingPathComponent("file")
        try Data().write(to: blocker)
        let r = try CLI.run(Self.baseArguments + ["--preset", "30s", "--output-dir", blocker.appendingPathComponent("eval").path])
        #expect(r.status == 1 && r.stderr.contains("cannot be created"), "\(r.stderr)")
        #expect(!r.stderr.contains("loading"))
    }

    @Test func maxLengthOutsideTheModelsContextIsRefused() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let zero = try CLI.run(Self.baseArguments + ["--max-length", "0", "--output-dir", out.path])
        #expect(zero.status != 0 && zero.stderr.contains("--max-length must be ≥ 1"), "\(zero.stderr)")
        let tokenizer = CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3")
        let long = try CLI.run(
            Self.baseArguments + [
                "--lm-eval-only", "--lm-eval-tasks", "arc_easy", "--tokenizer", tokenizer.path,
                "--max-length", "100000", "--output-dir", out.path,
            ])
        #expect(long.status != 0 && long.status < 128 && long.stderrLines.count == 1, "\(long.stderr)")
        #expect(long.stderr.contains("--max-length 100000 exceeds the model's max_seq_len"), "\(long.stderr)")
        #expect(try results(in: out).isEmpty)
    }
}
