import Foundation
import Testing

/// `moe-eval convert --random-weights`: bench's random weights written as an HF folder (the side-by-side
/// benchmark's model, tools/bench/llamacpp_side_by_side.sh), loadable by `forward`, and its refusals.
@Suite struct ConvertRandomWeightsCLITests {
    static func export(_ dtype: String, to output: URL) throws -> CLI.Result {
        try CLI.run([
            "convert", "--random-weights", "--flavor", "debugmodel", "--layers", "2", "--dtype", dtype,
            "--no-tokenizer", "--output", output.path, "--quiet",
        ])
    }

    @Test func writesTheFlavorOnTheRequestedLayersAndLoads() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        var tensorsByDType: [String: [String: (String, [Int])]] = [:]
        for dtype in ["fp32", "bf16"] {
            let out = dir.appendingPathComponent(dtype)
            let r = try Self.export(dtype, to: out)
            #expect(r.status == 0, "\(r.stderr)")
            let config = try ConvertCLITests.json(out.appendingPathComponent("config.json"))
            #expect(config["num_hidden_layers"] as? Int == 2)
            #expect(config["first_k_dense_replace"] as? Int == 1)
            #expect(config["vocab_size"] as? Int == 2048)
            let shards = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".safetensors") }
            var tensors: [String: (String, [Int])] = [:]
            for shard in shards { try tensors.merge(ConvertCLITests.header(out.appendingPathComponent(shard))) { a, _ in a } }
            #expect(!tensors.keys.contains { $0.hasPrefix("model.layers.2.") }, "only layers 0 and 1")
            #expect(tensors.keys.contains("model.layers.1.mlp.experts.7.down_proj.weight"))
            tensorsByDType[dtype] = tensors
        }
        let fp32 = try #require(tensorsByDType["fp32"]), bf16 = try #require(tensorsByDType["bf16"])
        #expect(fp32.allSatisfy { $0.value.0 == "F32" })
        #expect(Set(fp32.keys) == Set(bf16.keys))
        #expect(fp32.allSatisfy { bf16[$0.key]?.1 == $0.value.1 }, "same shapes in both dtypes")
        #expect(bf16["model.embed_tokens.weight"]?.0 == "BF16")

        let tokens = dir.appendingPathComponent("tokens.json")
        try Data(#"{"tokens": [[1, 2, 3, 4]]}"#.utf8).write(to: tokens)
        let forward = dir.appendingPathComponent("forward.json")
        let r = try CLI.run([
            "forward", "--checkpoint", dir.appendingPathComponent("fp32").path, "--tokens-file", tokens.path,
            "--output", forward.path,
        ])
        #expect(r.status == 0, "\(r.stderr)")
        let logits = try ConvertCLITests.logits(try ConvertCLITests.json(forward)["logits"])
        #expect(logits.count == 4 * 2048)
        #expect(logits.allSatisfy(\.isFinite) && logits.contains { $0 != 0 })
    }

    @Test func sameWeightsEveryTime() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        for name in ["a", "b"] { #expect(try Self.export("bf16", to: dir.appendingPathComponent(name)).status == 0) }
        let file = "model-00001-of-00001.safetensors"
        let a = try Data(contentsOf: dir.appendingPathComponent("a/\(file)"))
        #expect(a == (try Data(contentsOf: dir.appendingPathComponent("b/\(file)"))))
    }

    @Test func refusesLayersWithoutRandomWeightsAndACheckpointWithThem() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf").path
        let layers = try CLI.run(["convert", "--checkpoint", dir.path, "--flavor", "debugmodel", "--layers", "2", "--output", out])
        #expect(layers.status != 0 && layers.stderr.contains("--layers needs --random-weights"), "\(layers.stderr)")
        let both = try CLI.run(["convert", "--random-weights", "--checkpoint", dir.path, "--flavor", "debugmodel", "--output", out])
        #expect(both.status != 0 && both.stderr.contains("--random-weights and --checkpoint"), "\(both.stderr)")
        let zero = try CLI.run(["convert", "--random-weights", "--flavor", "debugmodel", "--layers", "0", "--output", out])
        #expect(zero.status != 0 && zero.stderr.contains("must be ≥ 1"), "\(zero.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
    }

    /// A layer count past the model-args limit is one error before any weight is made (it used to hang
    /// building random weights for 10⁸ layers), for convert and for bench alike.
    @Test func refusesMoreLayersThanModelArgsAllow() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf").path
        let convert = try CLI.run(["convert", "--random-weights", "--flavor", "debugmodel", "--layers", "100000000", "--output", out])
        #expect(convert.status != 0 && convert.stderr.contains("--layers 100000000 must be within 1...10000"), "\(convert.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out))
        let bench = try CLI.run(["bench", "--random-weights", "--flavor", "debugmodel", "--layers", "100000000"])
        #expect(bench.status != 0 && bench.stderr.contains("--layers 100000000 must be within 1...10000"), "\(bench.stderr)")
    }
}
