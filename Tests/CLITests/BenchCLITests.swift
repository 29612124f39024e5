import Foundation
import Testing

/// `moe-eval bench --json` reports the keys issue 6 names, on a real checkpoint and on random weights.
@Suite struct BenchCLITests {
    func check(_ r: CLI.Result) throws {
        #expect(r.status == 0, "\(r.stderr)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        for key in ["prefill_tokens_per_s", "decode_tokens_per_s", "routing_analysis_tokens_per_s", "load_seconds"] {
            #expect((json[key] as? Double ?? 0) > 0, "\(key)")
        }
        #expect((json["peak_rss_bytes"] as? Int ?? 0) > 0)
    }

    @Test func benchmarksACheckpoint() throws {
        let dir = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        try check(
            try CLI.run([
                "bench", "--checkpoint", dir.appendingPathComponent("checkpoint").path,
                "--model-args", dir.appendingPathComponent("model_args.json").path,
                "--batch", "2", "--seq-len", "16", "--decode-tokens", "4", "--iterations", "1", "--json",
            ]))
    }

    @Test func benchmarksAFlavorWithRandomWeights() throws {
        try check(
            try CLI.run([
                "bench", "--random-weights", "--flavor", "debugmodel", "--layers", "2", "--batch", "1",
                "--seq-len", "16", "--decode-tokens", "2", "--iterations", "1", "--json",
            ]))
    }

    /// The precision of the products is chosen per `--compute` and reported (issue 15).
    @Test func reportsTheComputePrecision() throws {
        let dir = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        let checkpoint = [
            "--checkpoint", dir.appendingPathComponent("checkpoint").path,
            "--model-args", dir.appendingPathComponent("model_args.json").path,
        ]
        let quick = ["--batch", "1", "--seq-len", "8", "--decode-tokens", "0", "--iterations", "1", "--skip-routing", "--json"]
        func compute(_ r: CLI.Result) throws -> String {
            #expect(r.status == 0, "\(r.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
            #expect((json["compute_reason"] as? String ?? "").contains("--compute"))
            return json["compute"] as? String ?? "missing"
        }
        // fp32 weights: auto (the default) stays fp32; bf16 is refused, naming the checkpoint.
        #expect(try compute(try CLI.run(["bench"] + checkpoint + quick)) == "fp32")
        let refused = try CLI.run(["bench"] + checkpoint + quick + ["--compute", "bf16"])
        #expect(refused.status == 1 && refused.stderr.contains("--compute bf16") && refused.stderr.contains("float32"), "\(refused.stderr)")
        // bf16 weights: bf16 when asked, fp32 when asked.
        let random = ["bench", "--random-weights", "--flavor", "debugmodel", "--layers", "1", "--weight-dtype", "bf16"] + quick
        #expect(try compute(try CLI.run(random + ["--compute", "bf16"])) == "bf16")
        #expect(try compute(try CLI.run(random + ["--compute", "fp32"])) == "fp32")
        let bad = try CLI.run(random + ["--compute", "fp16"])
        #expect(bad.status != 0 && bad.stderr.contains("--compute must be fp32, bf16 or auto"), "\(bad.stderr)")
    }

    @Test func needsACheckpointOrRandomWeights() throws {
        let r = try CLI.run(["bench", "--flavor", "debugmodel"])
        #expect(r.status != 0 && r.stderr.contains("--checkpoint is required (or --random-weights)"))
    }
}
