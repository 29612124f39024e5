import Foundation
import Testing

/// `moe-eval agreement` on the training-run fixtures, and agreement in `compare` from results files.
@Suite struct AgreementCLITests {
    static var run: URL { CLI.repoRoot.appendingPathComponent("Tests/MoEEvalTests/Fixtures/training_run") }
    static var modelArgs: String { run.appendingPathComponent("model_args.json").path }

    static func pairs(_ stdout: String) throws -> [[String: Any]] {
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stdout.utf8)) as? [String: Any])
        return try #require(object["pairs"] as? [[String: Any]])
    }

    @Test func directModeComparesEachCheckpointWithThePreviousAndTheLast() throws {
        let steps = ["seed0/step-0", "seed0/step-150", "seed0/step-400"].map { Self.run.appendingPathComponent($0).path }
        let r = try CLI.run(
            ["agreement"] + steps.flatMap { ["--checkpoint", $0] } + [
                "--model-args", Self.modelArgs, "--routing-input", "random", "--samples", "4", "--seq-len", "32", "--json",
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let pairs = try Self.pairs(r.stdout)
        // 0 → 150, 150 → 400, and 0 → 400.
        #expect(pairs.map { $0["from"] as? String } == [steps[0], steps[1], steps[0]])
        #expect(pairs.map { $0["to"] as? String } == [steps[1], steps[2], steps[2]])
        let agreement = try #require(pairs[1]["agreement"] as? [String: Any])
        #expect(agreement["tokens"] as? Int == 128)
        #expect(agreement["top1_agreement_chance"] as? Double == 0.125)
        #expect(agreement["topk_overlap_chance"] as? Double == 0.25)
        #expect((agreement["layers"] as? [Any])?.count == 1)
    }

    @Test func aCheckpointAgreesWithItselfExactly() throws {
        let final = Self.run.appendingPathComponent("seed0/step-400").path
        let r = try CLI.run([
            "agreement", "--checkpoint", final, "--checkpoint", final, "--model-args", Self.modelArgs,
            "--routing-input", "random", "--samples", "2", "--seq-len", "16",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("top-1 agreement"))
        #expect(r.stdout.contains("1 (chance 0.125)"))
    }

    @Test func differentArchitecturesAreRefusedInOneLine() throws {
        let other = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        let r = try CLI.run([
            "agreement", "--checkpoint", Self.run.appendingPathComponent("seed0/step-400").path,
            "--checkpoint", other.appendingPathComponent("checkpoint").path,
            "--model-args", Self.modelArgs, "--model-args", other.appendingPathComponent("model_args.json").path,
            "--routing-input", "random", "--samples", "1", "--seq-len", "8", "--quiet",
        ])
        #expect(r.status == 1)
        #expect(r.stderrLines.count == 1, "\(r.stderr)")
        #expect(r.stderr.contains("is not the same architecture"))
        #expect(r.stderr.contains("vocab_size 160, n_layers 3, MoE layers [1, 2], 8 experts top-3 vs deepseek_v3, vocab_size 64"))
    }

    /// Two runs of the same checkpoint with the same routing windows carry the same token set: compare shows
    /// agreement 1; the routed ids cost a few kilobytes.
    @Test func compareShowsAgreementFromResultsFiles() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        var files: [URL] = []
        for (index, step) in ["seed0/step-400", "seed0/step-400", "seed1/step-400"].enumerated() {
            let out = dir.appendingPathComponent("run\(index)")
            let r = try CLI.run([
                "run", "--checkpoint", Self.run.appendingPathComponent(step).path, "--model-args", Self.modelArgs,
                "--preset", "30s", "--routing-input", "random", "--output-dir", out.path, "--quiet",
            ])
            #expect(r.status == 0, "\(r.stderr)")
            let name = try #require(try FileManager.default.contentsOfDirectory(atPath: out.path).first { $0.hasSuffix(".json") })
            files.append(out.appendingPathComponent(name))
        }
        let object = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: files[0])) as? [String: Any])
        let routed = try #require(object["routed_experts"] as? [String: Any])
        #expect((routed["tokens"] as? Int ?? 0) > 0)
        let size = try JSONSerialization.data(withJSONObject: routed).count
        print("routed_experts: \(routed["tokens"] ?? 0) tokens, \(size) bytes")
        let r = try CLI.run(["compare", "--json", files[0].path, files[1].path, files[2].path])
        #expect(r.status == 0, "\(r.stderr)")
        let comparison = try #require(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any])
        let rows = try #require(comparison["agreement"] as? [[String: Any]])
        let same = try #require(rows.first { $0["from"] as? String == "A" && $0["to"] as? String == "B" })
        #expect((same["agreement"] as? [String: Any])?["top1_agreement"] as? Double == 1)
        let seeds = try #require(rows.first { $0["from"] as? String == "A" && $0["to"] as? String == "C" })
        #expect(((seeds["agreement"] as? [String: Any])?["top1_agreement"] as? Double ?? 1) < 0.5)
    }
}
