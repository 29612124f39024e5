import Foundation
import MoECheckpoint
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
        let json = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
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
        let golden = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        let config = try #require(golden["config"] as? [String: Any])
        #expect(config["rope_scaling"] == nil && config["rope_theta"] == nil)
        let back = try HFModelConfig.parse(config, source: url.path)
        let args = try ModelArgs.load(jsonFile: DSV3Fixtures.root.appendingPathComponent("v022_sigmoid_groups_yarn/model_args.json"))
        #expect(back.yarn)
        #expect(back.args.ropeTheta == args.ropeTheta && back.args.ropeFactor == args.ropeFactor)
        #expect(back.args.originalSeqLen == args.originalSeqLen && back.args.mscale == args.mscale)
        #expect(back.args.betaFast == args.betaFast && back.args.betaSlow == args.betaSlow)

        var plain = config
        plain["rope_parameters"] = ["rope_type": "default", "rope_theta": 50000.0]
        let unscaled = try HFModelConfig.parse(plain, source: "config.json")
        #expect(!unscaled.yarn && unscaled.args.ropeTheta == 50000)
    }
}
