import Foundation
import Testing

@testable import MoEModels

/// Parameter and FLOP counts that TorchTitan's own `get_moe_model_nparams_and_flops` printed for its
/// flavors (torch 2.15, torchtitan 0.2.2 and 0.3.0; ../shared/reference/torchtitan.md §1.2 and §6).
@Suite struct FlavorCountTests {
    @Test(arguments: [
        ("debugmodel", 33_014_016, 28_098_816),
        ("16B", 15_706_484_224, 2_661_150_208),
        ("236B", 235_741_434_880, 21_375_800_320),
        ("671B", 671_026_404_352, 37_552_282_624),
    ])
    func parameterCountsMatchTorchTitan(flavor: String, total: Int, active: Int) throws {
        let args = try #require(Flavors.args(for: flavor))
        #expect(args.totalParameters == total)
        #expect(args.activeParameters == active)
    }

    @Test(arguments: [
        ("debugmodel", 2048, 542_934_528), ("debugmodel", 4096, 920_421_888),
        ("16B", 2048, 16_407_303_168), ("16B", 4096, 18_105_996_288),
        ("236B", 4096, 185_507_051_520), ("671B", 2048, 250_455_926_784),
    ])
    func trainingFlopsMatchTorchTitan(flavor: String, seqLen: Int, flops: Int) throws {
        let args = try #require(Flavors.args(for: flavor))
        #expect(args.trainingFlopsPerToken(seqLen: seqLen) == flops)
    }

    @Test func fork10BTotalMatchesTheForkScripts() throws {
        #expect(try #require(Flavors.args(for: "10B")).totalParameters == 9_700_078_448)
    }
}

@Suite struct ModelArgsParsingTests {
    @Test func missingFieldsTakeTorchTitanDefaults() throws {
        let args = try ModelArgs.decode(json: Data(#"{"dim": 64, "n_layers": 2, "moe_args": {"top_k": 2}}"#.utf8), source: "t.json")
        #expect(args.dim == 64 && args.nLayers == 2 && args.moeArgs.topK == 2)
        #expect(args.vocabSize == 102_400 && args.kvLoraRank == 512 && args.maxSeqLen == 16_384)
        #expect(args.moeArgs.scoreFunc == "sigmoid" && args.moeArgs.numSharedExperts == 1 && args.moeArgs.scoreBeforeExperts)
        #expect(args.moeArgs.loadBalanceCoeff == 1e-3)
    }

    @Test func explicitNullLoadBalanceCoeffMeansNoBias() throws {
        let args = try ModelArgs.decode(json: Data(#"{"moe_args": {"load_balance_coeff": null}}"#.utf8), source: "t.json")
        #expect(args.moeArgs.loadBalanceCoeff == nil)
        #expect(!args.expectedShapes().keys.contains { $0.hasSuffix("expert_bias") })
    }

    @Test(arguments: [
        (#"{"dim": 64,"#, "t.json: malformed JSON"),
        (#"[1, 2]"#, "t.json: expected a JSON object"),
        (#"{"dimm": 64}"#, #"unknown model args field "dimm""#),
        (#"{"moe_args": {"topk": 2}}"#, #"unknown moe_args field "topk""#),
        (#"{"dim": "wide"}"#, #"at dim: expected an integer, found the string "wide""#),
        (#"{"moe_args": {"score_func": "relu"}}"#, "score_func must be"),
        (#"{"moe_args": {"num_experts": 8, "top_k": 9}}"#, "top_k (9) must be within"),
        (#"{"moe_args": {"num_experts": 8, "num_expert_groups": 3}}"#, "must divide num_experts"),
        (#"{"n_layers": 2, "n_dense_layers": 3}"#, "n_dense_layers (3)"),
    ])
    func badModelArgsNameTheProblem(json: String, expected: String) {
        do {
            _ = try ModelArgs.decode(json: Data(json.utf8), source: "t.json")
            Issue.record("no error for \(json)")
        } catch {
            let text = String(describing: error)
            #expect(text.contains(expected), "\(text)")
            #expect(text.hasPrefix("t.json"), "\(text)")
            #expect(!text.contains("\n"))
        }
    }
}

@Suite struct TrainConfigTests {
    // The syntax TorchTitan's own debug_model.toml uses: literal strings, dotted tables, inline comments.
    static let debugToml = """
        [job]
        dump_folder = "./outputs"
        description = "DeepSeek-V3 debug training"

        [model]
        name = "deepseek_v3"
        flavor = "debugmodel"
        hf_assets_path = "./tests/assets/tokenizer"  # test tokenizer

        [training]
        local_batch_size = 8
        seq_len = 2048
        steps = 10_000
        dataset = "c4_test"

        [parallelism]
        expert_parallel_degree = 1

        [activation_checkpoint]
        selective_ac_option = 'op'

        [quantize.linear.float8]
        filter_fqns = ["output", "router.gate"]
        """

    @Test func readsWhatEvaluationNeeds() throws {
        let c = try TrainConfig.parse(Self.debugToml, path: "debug.toml")
        #expect(c.modelName == "deepseek_v3" && c.flavor == "debugmodel" && c.seqLen == 2048)
        #expect(c.hfAssetsPath == "./tests/assets/tokenizer" && c.dumpFolder == "./outputs")
        #expect(c.checkpointFolder == "checkpoint" && c.expertParallelDegree == 1)
        let args = try c.modelArgs()
        #expect(args.maxSeqLen == 2048)
        #expect(args.dim == 256 && args.moeArgs.topK == 3)
    }

    @Test func malformedTomlNamesFileAndLine() {
        do {
            _ = try TrainConfig.parse("[model]\nname = \"deepseek_v3\"\nflavor = \n", path: "bad.toml")
            Issue.record("no error")
        } catch {
            let text = String(describing: error)
            #expect(text.hasPrefix("bad.toml: malformed TOML at line 3"), "\(text)")
        }
    }

    @Test func unknownFlavorAndModelAreClearErrors() throws {
        let c = try TrainConfig.parse(Self.debugToml.replacingOccurrences(of: "\"debugmodel\"", with: "\"3B\""), path: "x.toml")
        #expect(throws: UnknownFlavorError.self) { try c.modelArgs() }
        let llama = try TrainConfig.parse("[model]\nname = \"llama3\"\n", path: "l.toml")
        #expect(throws: ModelArgsError.self) { try llama.modelArgs() }
        #expect(throws: ModelArgsError.self) { try TrainConfig.parse("[training]\nseq_len = 5\n", path: "n.toml") }
        #expect(throws: ModelArgsError.self) { try TrainConfig.parse("[model]\n[training]\nseq_len = \"long\"\n", path: "n.toml") }
    }
}

@Suite struct NumericsTests {
    @Test func eraRulesFollowTorchTitan() throws {
        var args = try #require(Flavors.args(for: "debugmodel"))
        args.maxSeqLen = 2048
        let a = Numerics.resolve(args: args, namingEra: .v0_2)
        #expect(!a.yarn && a.finalNormEps == Float(1.1920929e-07))
        let b = Numerics.resolve(args: args, namingEra: .v0_3)
        #expect(b.yarn && b.finalNormEps == Float(1e-5))
        let mixed = Numerics.resolve(args: args, namingEra: .mixed)
        #expect(!mixed.yarn && mixed.finalNormEps == Float(1e-5))
        args.maxSeqLen = 8192
        #expect(Numerics.resolve(args: args, namingEra: .v0_2).yarn)
        let forced = Numerics.resolve(args: args, namingEra: .v0_3, era: .v0_2, yarn: false, finalNormEps: 1e-6)
        #expect(!forced.yarn && forced.finalNormEps == 1e-6)
    }

    /// YaRN with TorchTitan's defaults leaves pairs 0–10 alone, blends 11–22, divides 23–31 by 40
    /// (torchtitan.md §1.3, verified there against the real module).
    @Test func yarnRampMatchesTorchTitanPattern() throws {
        let args = try #require(Flavors.args(for: "16B"))
        let plain = DeepSeekV3.ropeFrequencies(args: args, yarn: false)
        let yarn = DeepSeekV3.ropeFrequencies(args: args, yarn: true)
        let ratio = zip(yarn, plain).map { Double($0 / $1) }
        #expect(ratio[0...10].allSatisfy { abs($0 - 1) < 1e-6 })
        #expect(ratio[23...31].allSatisfy { abs($0 - 0.025) < 1e-6 })
        #expect(abs(ratio[11] - 0.925) < 1e-5 && abs(ratio[22] - 0.1) < 1e-5)
    }
}
