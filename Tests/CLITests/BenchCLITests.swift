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

    @Test func needsACheckpointOrRandomWeights() throws {
        let r = try CLI.run(["bench", "--flavor", "debugmodel"])
        #expect(r.status != 0 && r.stderr.contains("--checkpoint is required (or --random-weights)"))
    }
}
