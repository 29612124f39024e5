import Foundation
import MoECheckpoint
import Testing

/// `moe-eval convert` on the gpt-oss fixture: the `GptOssForCausalLM` folder equals the committed hf/ copy that
/// transformers reproduced TorchTitan's logits from.
@Suite struct GptOssCLITests {
    static let fixture = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/gpt_oss/v030_gptoss_fp32")

    @Test func convertWritesTheHuggingFaceCopy() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let folder = out.appendingPathComponent("hf")
        let r = try CLI.run([
            "convert", "--checkpoint", Self.fixture.appendingPathComponent("checkpoint").path,
            "--model-args", Self.fixture.appendingPathComponent("model_args.json").path,
            "--output", folder.path, "--no-tokenizer", "--quiet",
        ])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stdout.contains("config.json: gpt_oss (GptOssForCausalLM)"), "\(r.stdout)")
        let ours = try SafetensorsCheckpoint(url: folder)
        let golden = try SafetensorsCheckpoint(url: Self.fixture.appendingPathComponent("hf"))
        #expect(Set(ours.rawTensorInfos.keys) == Set(golden.rawTensorInfos.keys))
        for name in golden.rawTensorInfos.keys.sorted() {
            #expect(try ours.loadRaw(name).bytes.elementsEqual(golden.loadRaw(name).bytes), "\(name)")
        }
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent("config.json"))) as? [String: Any])
        #expect(config["model_type"] as? String == "gpt_oss" && config["architectures"] as? [String] == ["GptOssForCausalLM"])
    }

    /// The debug model's registry config does not fit the tiny fixture: refused, naming the tensor.
    @Test func registryConfigOfAnotherSizeIsRefused() throws {
        let out = try CLI.scratch()
        defer { CLI.cleanUp(out) }
        let r = try CLI.run([
            "convert", "--checkpoint", Self.fixture.appendingPathComponent("checkpoint").path,
            "--module", "gpt_oss", "--config", "gpt_oss_debugmodel",
            "--output", out.appendingPathComponent("hf").path, "--no-tokenizer", "--quiet",
        ])
        #expect(r.status != 0)
        #expect(r.stderr.contains("tok_embeddings.weight has shape [48, 32] but the gpt_oss model args imply [2048, 256]"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: out.appendingPathComponent("hf").path))
    }
}
