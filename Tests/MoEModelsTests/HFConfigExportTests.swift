import Foundation
import MoECheckpoint
import MoEJSON
import Testing

@testable import MoEModels

/// The config.json `moe-eval convert` writes reads back (HFModelConfig) to the same model args and to the
/// numerics TorchTitan's own modules reported for each fixture (variant.json).
@Suite struct HFConfigExportTests {
    static func numerics(_ variant: String, _ args: ModelArgs) throws -> Numerics {
        let info = try DSV3Fixtures.json(variant, "variant.json")
        let era: NamingEra = info["torchtitan_version"] as? String == "0.3.0" ? .v0_3 : .v0_2
        return Numerics.resolve(args: args, namingEra: era)
    }

    @Test(arguments: DSV3Fixtures.variants.filter { $0 != "v022_no_shared_score_before" })
    func roundTripsThroughTheReader(variant: String) throws {
        let args = try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("\(variant)/model_args.json"))
        let numerics = try Self.numerics(variant, args)
        let text = try HFConfigExport.configJSON(args: args, numerics: numerics, torchDType: "float32", bosTokenId: 0, eosTokenId: 1)
        let json = try #require(try JSONValue.parse(text).objectValue)
        let back = try HFModelConfig.parse(json, source: "config.json")

        let info = try DSV3Fixtures.json(variant, "variant.json")
        #expect(back.yarn == info["yarn_active"] as? Bool)
        #expect(Double(back.finalNormEps) == (info["final_norm_eps"] as? Double).map { Double(Float($0)) })
        var expected = args
        if !back.yarn {
            // Without YaRN, HF configs carry no rope_scaling, so these keep the reader's defaults.
            let d = ModelArgs()
            (expected.ropeFactor, expected.originalSeqLen, expected.betaFast, expected.betaSlow, expected.mscale) =
                (d.ropeFactor, d.originalSeqLen, d.betaFast, d.betaSlow, d.mscale)
        }
        #expect(back.args == expected)
    }

    @Test func refusesWhatHFCannotExpress() throws {
        var args = try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("v022_no_shared_score_before/model_args.json"))
        let numerics = Numerics.resolve(args: args, namingEra: .v0_2)
        #expect(throws: ModelArgsError.self) {
            try HFConfigExport.configJSON(args: args, numerics: numerics, torchDType: "float32", bosTokenId: nil, eosTokenId: nil)
        }
        args.moeArgs.scoreBeforeExperts = false
        args.moeArgs.gateBias = true
        #expect(throws: ModelArgsError.self) {
            try HFConfigExport.configJSON(args: args, numerics: numerics, torchDType: "float32", bosTokenId: nil, eosTokenId: nil)
        }
    }

    /// transformers ≥ 5 keeps (and saves) the rope settings as `rope_parameters`, rope_theta inside: the
    /// config as transformers held it after loading our conversion (golden) reads back to the same rope.
    @Test func readsTransformersRopeParameters() throws {
        let url = DSV3Fixtures.root.deletingLastPathComponent().appendingPathComponent("transformers/v022_sigmoid_groups_yarn.json")
        let golden = try JSONValue.parse(Array(Data(contentsOf: url)))
        let config = try #require(golden["config"]?.objectValue)
        #expect(config["rope_scaling"] == nil && config["rope_theta"] == nil)
        let back = try HFModelConfig.parse(config, source: url.path)
        let args = try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("v022_sigmoid_groups_yarn/model_args.json"))
        #expect(back.yarn)
        #expect(back.args.ropeTheta == args.ropeTheta && back.args.ropeFactor == args.ropeFactor)
        #expect(back.args.originalSeqLen == args.originalSeqLen && back.args.mscale == args.mscale)
        #expect(back.args.betaFast == args.betaFast && back.args.betaSlow == args.betaSlow)

        var plain = config
        plain.set("rope_parameters", .object(["rope_type": .string("default"), "rope_theta": .double(50000)]))
        let unscaled = try HFModelConfig.parse(plain, source: "config.json")
        #expect(!unscaled.yarn && unscaled.args.ropeTheta == 50000)
    }
}

/// Which transformers architecture reproduces TorchTitan's router, and a plain statement when none does.
@Suite struct HFArchitectureTests {
    static func args(_ variant: String) throws -> ModelArgs {
        try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("\(variant)/model_args.json"))
    }

    @Test func softmaxWithoutSelectionBiasIsDeepseekV2() throws {
        var args = try Self.args("v022_softmax_basic")
        #expect(HFConfigExport.architecture(args: args, routingBiasIsZero: true) == (.deepseekV2, nil))
        args.moeArgs.numExpertGroups = 4
        args.moeArgs.numLimitedGroups = 4
        #expect(HFConfigExport.architecture(args: args, routingBiasIsZero: true).architecture == .deepseekV2, "every group allowed")

        for change in [{ (a: inout ModelArgs) in a.moeArgs.routeNorm = true }, { $0.moeArgs.numLimitedGroups = 2 }] {
            var other = args
            change(&other)
            let (architecture, why) = HFConfigExport.architecture(args: other, routingBiasIsZero: true)
            #expect(architecture == .deepseekV3)
            #expect(why?.hasPrefix("no transformers architecture reproduces this softmax-routed model") == true, "\(why ?? "")")
        }
        let (architecture, why) = HFConfigExport.architecture(args: args, routingBiasIsZero: false)
        #expect(architecture == .deepseekV3 && why?.contains("nonzero expert_bias") == true)
        let numerics = Numerics.resolve(args: args, namingEra: .v0_2)
        #expect(HFConfigExport.transformersDifferences(args: args, numerics: numerics, routingBiasIsZero: false).first == why)
    }

    @Test func sigmoidIsDeepseekV3WithOrWithoutBias() throws {
        let args = try Self.args("v022_sigmoid_groups_yarn")
        #expect(HFConfigExport.architecture(args: args, routingBiasIsZero: false) == (.deepseekV3, nil))
        #expect(HFConfigExport.architecture(args: args, routingBiasIsZero: true) == (.deepseekV3, nil))
        let numerics = Numerics.resolve(args: args, namingEra: .v0_2)
        #expect(throws: ModelArgsError.self) {
            try HFConfigExport.configJSON(
                args: args, numerics: numerics, torchDType: "float32", bosTokenId: nil, eosTokenId: nil,
                architecture: .deepseekV2)
        }
    }

    /// The DeepseekV2 config reads back to the same model, without a routing bias (DeepSeek-V2 checkpoints hold none).
    @Test func deepseekV2ConfigReadsBack() throws {
        let args = try Self.args("v022_softmax_basic")
        let numerics = Numerics.resolve(args: args, namingEra: .v0_2)
        let text = try HFConfigExport.configJSON(
            args: args, numerics: numerics, torchDType: "float32", bosTokenId: nil,
            eosTokenId: nil, architecture: .deepseekV2)
        let json = try #require(try JSONValue.parse(text).objectValue)
        #expect(json["architectures"] == .array([.string("DeepseekV2ForCausalLM")]) && json["model_type"] == .string("deepseek_v2"))
        #expect(json["topk_method"] == .string("greedy") && json["q_lora_rank"] == .null && json["scoring_func"] == nil)
        let back = try HFModelConfig.parse(json, source: "config.json")
        var expected = args
        expected.moeArgs.loadBalanceCoeff = nil
        let d = ModelArgs()
        (expected.ropeFactor, expected.originalSeqLen, expected.betaFast, expected.betaSlow, expected.mscale) =
            (d.ropeFactor, d.originalSeqLen, d.betaFast, d.betaSlow, d.mscale)
        #expect(back.args == expected)

        var grouped = json
        grouped.set("topk_method", .string("group_limited_greedy"))
        grouped.set("n_group", .int(4))
        grouped.set("topk_group", .int(2))
        #expect(throws: ModelArgsError.self) { try HFModelConfig.parse(grouped, source: "config.json") }
    }
}
