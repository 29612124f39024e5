import Foundation
import MoECheckpoint
import Testing

@testable import MoEModels

/// `convert` asks the registry, and only the registry, which family writes the HF folder: every registered
/// family answers for its own fixtures, a family registered only in a test is found the same way, and options a
/// family cannot honour are refused before anything is written.
@Suite struct FamilyConversionTests {
    static func temporaryFolder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-conversion-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func everyRegisteredFamilyHasAnHFExport() {
        #expect(ModelRegistry.families.map(\.name) == ["deepseek_v3", "qwen3", "gpt_oss"])
        for family in ModelRegistry.families {
            #expect(family.hfConversion != nil, "\(family.name) has no HF export")
            for module in family.torchTitanModules {
                #expect(ModelRegistry.family(module: module)?.hfConversion != nil, "--module \(module)")
            }
        }
    }

    /// Each family's fixture (selected by its model-args file) goes to that family's exporter and is written
    /// with the architecture transformers loads.
    @Test(arguments: [
        (DSV3Fixtures.root.appendingPathComponent("v022_softmax_basic"), "deepseek_v3", "DeepseekV2ForCausalLM"),
        (Qwen3Fixtures.root.appendingPathComponent("v030_qwen3_fp32"), "qwen3", "Qwen3MoeForCausalLM"),
        (GptOssFixtures.root.appendingPathComponent("v030_gptoss_fp32"), "gpt_oss", "GptOssForCausalLM"),
    ])
    func registeredFamilyWritesItsArchitecture(fixture: URL, family: String, architecture: String) throws {
        let spec = ModelSpec(
            checkpoint: fixture.appendingPathComponent("checkpoint"), modelArgs: fixture.appendingPathComponent("model_args.json"))
        let (selected, conversion) = try ModelRegistry.hfConversion(
            HFConversionRequest(spec: spec, dtype: .bfloat16, maxShardSize: 1 << 30))
        #expect(selected.name == family)
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        var calls = 0
        let summary = try conversion.write(dir, HFSpecialTokens(bos: 1, eos: 2)) { _, _ in calls += 1 }
        #expect(summary.tensors > 0 && calls == summary.tensors, "progress after each tensor")
        #expect(summary.dtypes.contains("bfloat16"))
        #expect(summary.config.contains(architecture), "\(summary.config)")
        let config = try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: dir.appendingPathComponent("config.json"))) as? [String: Any])
        #expect(config["architectures"] as? [String] == [architecture])
        let shards = try FileManager.default.contentsOfDirectory(atPath: dir.path).filter { $0.hasSuffix(".safetensors") }
        #expect(shards.count == summary.files)
    }

    /// A family that exists only in the list a test passes is selected by `--module` and by `model_type`, and
    /// its conversion receives the request and the tokenizer's ids; without it the same spec is refused.
    @Test func injectedFamilyIsPickedUp() throws {
        let fake = ModelFamily(
            name: "fake_moe", torchTitanModules: ["fake_moe"], hfModelTypes: ["fake_moe_hf"],
            numExperts: { _ in 2 }, load: { _, _ in throw ModelLoadError("fake_moe has no model") },
            hfConversion: { request in
                HFConversion(sourceDescription: "fake \(request.spec.checkpoint.lastPathComponent)", trainConfig: nil) {
                    folder, tokens, progress in
                    try Data("{\"bos\": \(tokens.bos ?? -1), \"dtype\": \"\(request.dtype.rawValue)\"}".utf8)
                        .write(to: folder.appendingPathComponent("config.json"))
                    progress?(1, 1)
                    return HFConversionSummary(
                        tensors: 1, bytes: 4, files: 1, dtypes: ["float32"],
                        config: "FakeMoeForCausalLM, shards of \(request.maxShardSize) bytes", notes: ["fake note"])
                }
            })
        let families = ModelRegistry.families + [fake]
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }

        let byModule = ModelSpec(checkpoint: dir, registryModule: "fake_moe", registryConfig: "fake_small")
        let (family, conversion) = try ModelRegistry.hfConversion(
            HFConversionRequest(spec: byModule, dtype: .float32, maxShardSize: 1234), among: families)
        #expect(family.name == "fake_moe" && conversion.sourceDescription == "fake \(dir.lastPathComponent)")
        let out = dir.appendingPathComponent("out")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        let summary = try conversion.write(out, HFSpecialTokens(bos: 7), nil)
        #expect(summary.config == "FakeMoeForCausalLM, shards of 1234 bytes" && summary.notes == ["fake note"])
        #expect(try String(contentsOf: out.appendingPathComponent("config.json"), encoding: .utf8) == #"{"bos": 7, "dtype": "fp32"}"#)

        do {
            _ = try ModelRegistry.hfConversion(HFConversionRequest(spec: byModule, dtype: .keep, maxShardSize: 1))
            Issue.record("--module fake_moe was accepted without the fake family registered")
        } catch {
            #expect("\(error)".contains("fake_moe") && "\(error)".contains("gpt_oss"), "\(error)")
        }

        try Data(#"{"model_type": "fake_moe_hf"}"#.utf8).write(to: dir.appendingPathComponent("config.json"))
        let byModelType = try ModelRegistry.family(for: ModelSpec(checkpoint: dir), among: families)
        #expect(byModelType.family.name == "fake_moe" && byModelType.reason.contains("fake_moe_hf"))
    }

    @Test func familyWithoutHFExportIsRefusedByName() throws {
        let exportless = ModelFamily(
            name: "no_export_moe", torchTitanModules: ["no_export_moe"], hfModelTypes: [],
            numExperts: { _ in 2 }, load: { _, _ in throw ModelLoadError("no model") })
        let spec = ModelSpec(
            checkpoint: FileManager.default.temporaryDirectory, registryModule: "no_export_moe", registryConfig: "any")
        do {
            _ = try ModelRegistry.hfConversion(HFConversionRequest(spec: spec, dtype: .keep, maxShardSize: 1), among: [exportless])
            Issue.record("a family without an HF export converted")
        } catch {
            #expect("\(error)".contains("no_export_moe") && "\(error)".contains("no Hugging Face export"), "\(error)")
        }
    }

    /// What selects a family without `--module`: a registry config name only one family has, and a model-args
    /// file whose fields only gpt-oss's args have (no "family" tag).
    @Test func selectionWithoutModule() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let byConfig = try ModelRegistry.family(for: ModelSpec(checkpoint: dir, registryConfig: "qwen3_moe_debug"))
        #expect(byConfig.family.name == "qwen3" && byConfig.reason == "--config qwen3_moe_debug")
        #expect(try ModelRegistry.family(for: ModelSpec(checkpoint: dir, registryConfig: "gpt_oss_debugmodel")).family.name == "gpt_oss")
        #expect(
            try ModelRegistry.family(for: ModelSpec(checkpoint: dir, registryConfig: "deepseek_v3_debugmodel")).family.name == "deepseek_v3"
        )

        let untagged = dir.appendingPathComponent("model_args.json")
        try Data(#"{"dim": 32, "attention_sinks": true, "swiglu_limit": 7.0}"#.utf8).write(to: untagged)
        #expect(try ModelRegistry.family(for: ModelSpec(checkpoint: dir, modelArgs: untagged)).family.name == "gpt_oss")
        try Data(#"{"model_args": {"family": "qwen3", "dim": 32}}"#.utf8).write(to: untagged)
        #expect(try ModelRegistry.family(for: ModelSpec(checkpoint: dir, modelArgs: untagged)).family.name == "qwen3")
        try Data(#"{"dim": 32, "n_layers": 2}"#.utf8).write(to: untagged)
        #expect(try ModelRegistry.family(for: ModelSpec(checkpoint: dir, modelArgs: untagged)).family.name == "deepseek_v3")
    }

    /// DeepSeek-V3's numerics options mean nothing to the other families' args: refused by name, not ignored.
    @Test(arguments: [
        (Qwen3Fixtures.root.appendingPathComponent("v030_qwen3_fp32"), "qwen3"),
        (GptOssFixtures.root.appendingPathComponent("v030_gptoss_fp32"), "gpt_oss"),
    ])
    func deepSeekOnlyOptionsAreRefused(fixture: URL, family: String) throws {
        var spec = ModelSpec(
            checkpoint: fixture.appendingPathComponent("checkpoint"), modelArgs: fixture.appendingPathComponent("model_args.json"))
        spec.yarn = true
        spec.finalNormEps = 1e-5
        do {
            _ = try ModelRegistry.hfConversion(HFConversionRequest(spec: spec, dtype: .keep, maxShardSize: 1 << 30))
            Issue.record("\(family) accepted --yarn and --final-norm-eps")
        } catch {
            let message = "\(error)"
            #expect(message.contains("--yarn, --final-norm-eps apply to deepseek_v3") && message.contains(family), "\(message)")
        }
    }
}
