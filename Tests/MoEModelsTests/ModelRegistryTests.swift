import Foundation
import Testing

@testable import MoEModels

/// Which family a spec selects, and that the loaded model goes through the seam.
@Suite struct ModelRegistryTests {
    static func temporaryFolder() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-registry-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test func modulesAndModelTypesNameOneFamilyEach() {
        let modules = ModelRegistry.families.flatMap(\.torchTitanModules)
        let types = ModelRegistry.families.flatMap(\.hfModelTypes)
        #expect(Set(modules).count == modules.count && Set(types).count == types.count)
        #expect(ModelRegistry.family(module: "deepseek_v3")?.name == "deepseek_v3")
        #expect(ModelRegistry.family(module: "kimi_k2_7")?.name == "deepseek_v3")
        #expect(ModelRegistry.family(hfModelType: "deepseek_v3")?.name == "deepseek_v3")
        #expect(ModelRegistry.family(module: "no_such_family") == nil)
    }

    @Test func selectionOrder() throws {
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        // Nothing names a family: DeepSeek-V3.
        let plain = try ModelRegistry.family(for: ModelSpec(checkpoint: dir))
        #expect(plain.family.name == "deepseek_v3" && plain.reason == "default family")
        // An unknown --module is refused with the known ones listed.
        #expect(throws: ModelArgsError.self) { try ModelRegistry.family(for: ModelSpec(checkpoint: dir, registryModule: "llama4")) }
        do {
            _ = try ModelRegistry.family(for: ModelSpec(checkpoint: dir, registryModule: "llama4"))
        } catch {
            #expect("\(error)".contains("llama4") && "\(error)".contains("deepseek_v3"))
        }
        // A model-args file's "family".
        let args = dir.appendingPathComponent("model_args.json")
        try Data(#"{"family": "kimi_k2_7", "dim": 32}"#.utf8).write(to: args)
        let declared = try ModelRegistry.family(for: ModelSpec(checkpoint: dir, modelArgs: args))
        #expect(declared.family.name == "deepseek_v3" && declared.reason.contains("\"family\""))
        try Data(#"{"family": 3}"#.utf8).write(to: args)
        #expect(throws: ModelArgsError.self) { try ModelRegistry.family(for: ModelSpec(checkpoint: dir, modelArgs: args)) }
        // An HF config.json's model_type, only when no args are given otherwise.
        try Data(#"{"model_type": "llama"}"#.utf8).write(to: dir.appendingPathComponent("config.json"))
        do {
            _ = try ModelRegistry.family(for: ModelSpec(checkpoint: dir))
            Issue.record("model_type llama was accepted")
        } catch {
            #expect("\(error)".contains("model_type \"llama\""))
        }
        #expect(try ModelRegistry.family(for: ModelSpec(checkpoint: dir, flavor: "debugmodel")).family.name == "deepseek_v3")
    }

    /// A model-args file that names its family still loads (the field is not a DeepSeek-V3 arg), and the
    /// model reaches consumers through the protocol with the shape its args give.
    @Test func familyFieldLoadsThroughTheSeam() throws {
        let variant = DSV3Fixtures.root.appendingPathComponent("v022_softmax_basic")
        let dir = try Self.temporaryFolder()
        defer { try? FileManager.default.removeItem(at: dir) }
        let original = try Data(contentsOf: variant.appendingPathComponent("model_args.json"))
        var text = String(decoding: original, as: UTF8.self)
        let brace = try #require(text.firstIndex(of: "{"))
        text.insert(contentsOf: #""family": "deepseek_v3", "#, at: text.index(after: brace))
        let args = dir.appendingPathComponent("model_args.json")
        try Data(text.utf8).write(to: args)
        let loaded = try ModelLoader.load(ModelSpec(checkpoint: variant.appendingPathComponent("checkpoint"), modelArgs: args))
        let expected = try ModelArgs.load(jsonFile: variant.appendingPathComponent("model_args.json"))
        #expect(loaded.family.name == "deepseek_v3")
        let shape = loaded.model.shape
        #expect(shape.vocabSize == expected.vocabSize && shape.layers == expected.nLayers)
        #expect(shape.moeLayers == (0..<expected.nLayers).filter(expected.isMoELayer))
        #expect(shape.numExperts == expected.moeArgs.numExperts && shape.topK == expected.moeArgs.topK)
        #expect(loaded.model.kvCacheLayout.valuesPerPosition == KVCache.valuesPerPosition(expected) * expected.nLayers)
        #expect(loaded.model.trainingFlopsPerToken(seqLen: 64) == expected.trainingFlopsPerToken(seqLen: 64))
        #expect(loaded.model.activeParameters == expected.activeParameters)
        let footprint = loaded.model.footprint
        #expect(footprint.heldDenseBytes + footprint.heldExpertBytes > footprint.activeWeightBytesPerToken)
        #expect(loaded.model.moeBlocks.map(\.layer) == shape.moeLayers)
    }
}
