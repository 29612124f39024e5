import Foundation
import MoEModels
import MoETensor
import Testing

@testable import MoECheckpoint

@Suite struct NamingTests {
    /// TorchTitan 0.2.2's own from_hf_map, with numbers filled in.
    @Test func hfNamesFollowTheTorchTitanAdapter() throws {
        let templates = Fixtures.section("from_hf_map_v022").compactMapValues { $0 as? String }
        #expect(templates.count >= 20)
        for (hfTemplate, ttTemplate) in templates {
            let placeholders = hfTemplate.components(separatedBy: "{}").count - 1
            let hf = fill(hfTemplate, [7, 5].prefix(placeholders))
            let tt = fill(ttTemplate, [7])
            if placeholders == 2 {
                #expect(HFNames.fromHF(hf) == .expert(canonical: tt, expert: 5), "\(hf)")
                #expect(HFNames.toHF(experts: tt, expert: 5) == hf, "\(tt)")
                #expect(HFNames.isGroupedExperts(tt))
            } else {
                #expect(HFNames.fromHF(hf) == .tensor(canonical: tt), "\(hf)")
                #expect(HFNames.toHF(tt) == hf, "\(tt)")
            }
        }
        #expect(HFNames.fromHF("model.layers.7.mlp.experts.5.gate_proj.bias") == nil)
        #expect(HFNames.fromHF("model.layers.07.input_layernorm.weight") == nil)
        #expect(HFNames.fromHF("model.layers.3.self_attn.rotary_emb.inv_freq") == .ignored(reason: "non-persistent RoPE buffer"))
    }

    private func fill(_ template: String, _ numbers: some Collection<Int>) -> String {
        var result = template
        for n in numbers {
            if let range = result.range(of: "{}") { result.replaceSubrange(range, with: String(n)) }
        }
        return result
    }

    /// Every key the adapter's to_hf produced for the fixtures maps back to its TorchTitan key.
    @Test func fixtureHFKeysMapToTheirTorchTitanKeys() throws {
        let canonicalV03 = Fixtures.section("canonical", "dcp_tt_v03").compactMapValues { $0 as? String }
        for fixture in ["hf_single", "hf_sharded"] {
            let names = Fixtures.section("hf_names", fixture)
            #expect(!names.isEmpty)
            for (hf, value) in names {
                let pair = try #require(value as? [Any])
                let raw = try #require(pair[0] as? String)
                let expert = try #require(pair[1] as? Int)
                let canonical = fixture == "hf_sharded" ? try #require(canonicalV03[raw]) : raw
                let mapped = HFNames.fromHF(hf)
                if expert >= 0 {
                    #expect(mapped == .expert(canonical: canonical, expert: expert), "\(hf)")
                } else {
                    #expect(mapped == .tensor(canonical: canonical), "\(hf)")
                }
            }
        }
    }

    @Test func hfSingleFileStacksExpertsLikeTorchTitan() throws {
        // The HF file is the adapter's to_hf of the v0.2 state; loading must give the grouped originals.
        let expected = Fixtures.tensors("dcp_tt_v02")
        for url in [Fixtures.url("hf_single"), Fixtures.url("hf_single/model.safetensors")] {
            let source = try openWeightSource(at: url)
            #expect(source.namingEra == .huggingface)
            #expect(Set(source.tensorInfos.keys) == Set(expected.keys))
            for (name, record) in expected {
                expectMatches(try source.load(name), record, name)
                #expect(source.tensorInfos[name] == TensorInfo(dtype: record.dtype, shape: record.shape))
            }
        }
    }

    @Test func hfShardedMatchesTheV03Checkpoint() throws {
        let source = try openWeightSource(at: Fixtures.url("hf_sharded"))
        let canonical = Fixtures.section("canonical", "dcp_tt_v03").compactMapValues { $0 as? String }
        let expected = Fixtures.tensors("dcp_tt_v03")
        #expect(Set(source.tensorInfos.keys) == Set(canonical.values))
        for (raw, name) in canonical {
            expectMatches(try source.load(name), expected[raw], name)
        }
        #expect(source.description.contains("2 files"))
    }

    @Test func splittingExpertsGivesTheHFTensors() throws {
        let checkpoint = try SafetensorsCheckpoint(url: Fixtures.url("hf_single"))
        let source = try NamedWeightSource(store: checkpoint, naming: DeepSeekV3Naming())
        var grouped = 0
        for name in source.tensorInfos.keys where HFNames.isGroupedExperts(name) {
            grouped += 1
            let parts = try HFNames.splitExperts(try source.load(name))
            #expect(parts.count == source.tensorInfos[name]?.shape.first)
            for part in parts {
                #expect(Array(part.bytes) == Array(try checkpoint.loadRaw(part.name).bytes), "\(part.name)")
                #expect(part.shape == checkpoint.rawTensorInfos[part.name]?.shape)
            }
        }
        #expect(grouped == 3)
    }

    @Test func v03SpellingsRoundTrip() throws {
        let canonical = Fixtures.section("canonical", "dcp_tt_v03").compactMapValues { $0 as? String }
        for (raw, name) in canonical {
            #expect(TorchTitanNames.v0_3Name(ofCanonical: name) == raw)
            guard case .weight(let c, _)? = TorchTitanNames.classify(raw) else {
                Issue.record("\(raw) not classified")
                continue
            }
            #expect(c == name)
        }
    }

    @Test func erasAreDetectedPerKey() throws {
        let common = ["tok_embeddings.weight", "layers.0.attention.wq.weight", "norm.weight", "layers.1.moe.router.gate.weight"]
        func era(_ keys: [String]) throws -> NamingEra { try TorchTitanNaming(keys: common + keys, source: "k").era }
        // The four states of TorchTitan main listed in the reference (head, experts, bias).
        #expect(try era(["output.weight", "layers.1.moe.experts.w1", "layers.1.moe.expert_bias"]) == .v0_2)
        #expect(try era(["lm_head.weight", "layers.1.moe.experts.w1", "layers.1.moe.expert_bias"]) == .mixed)
        #expect(try era(["lm_head.weight", "layers.1.moe.experts.w1_EFD", "layers.1.moe.expert_bias_E"]) == .v0_3)
        #expect(try era(["lm_head.weight", "layers.1.moe.routed_experts.inner_experts.w2_EDF", "layers.1.moe.expert_bias_E"]) == .v0_3)
        #expect(try era([]) == .v0_2)
        let mixed = try TorchTitanNaming(keys: common + ["lm_head.weight", "layers.1.moe.experts.w1"], source: "k")
        #expect(mixed.styles.map(\.era).sorted { $0.rawValue < $1.rawValue } == [.v0_2, .v0_3])
        #expect(mixed.rawNames["output.weight"] == "lm_head.weight")
    }

    @Test func buffersAndMTPAreIgnoredAndUnknownKeysListed() throws {
        let naming = try TorchTitanNaming(
            keys: [
                "norm.weight", "freqs_cis", "layers.0.moe.tokens_per_expert",
                "layers.0.moe.tokens_per_expert_E", "layers.0.attention.rope.cache",
                "layers.1.moe.router.gate.bias", "mtp_layers.0.enorm.weight",
            ], source: "k")
        #expect(naming.ignoredKeys.count == 5)
        #expect(naming.rawNames.keys.sorted() == ["layers.1.moe.router.gate.bias", "norm.weight"])
        expectError(["ckpt-x", "layers.0.attention.wk.weight", "layers.0.moe.experts.w1_EDF", "unrecognised"]) {
            _ = try TorchTitanNaming(
                keys: ["norm.weight", "layers.0.attention.wk.weight", "layers.0.moe.experts.w1_EDF"], source: "ckpt-x")
        }
        expectError(["both name output.weight"]) {
            _ = try TorchTitanNaming(keys: ["output.weight", "lm_head.weight"], source: "k")
        }
        expectError(["unrecognised HuggingFace", "model.layers.0.self_attn.k_proj.weight"]) {
            _ = try HFNaming(keys: ["model.norm.weight", "model.layers.0.self_attn.k_proj.weight"], source: "k")
        }
        expectError(["FP8", "weight_scale_inv"]) {
            _ = try HFNaming(keys: ["model.layers.0.self_attn.o_proj.weight_scale_inv"], source: "k")
        }
        expectError(["not numbered"]) {
            _ = try HFNaming(
                keys: ["model.layers.1.mlp.experts.0.up_proj.weight", "model.layers.1.mlp.experts.2.up_proj.weight"], source: "k")
        }
        // DeepSeek-V3 keeps its MTP block as an extra layer with enorm/hnorm/eh_proj.
        let hf = try HFNaming(
            keys: [
                "model.norm.weight", "model.layers.2.enorm.weight", "model.layers.2.self_attn.o_proj.weight",
                "model.layers.1.self_attn.o_proj.weight",
            ], source: "k")
        #expect(hf.ignoredKeys.count == 2)
        #expect(hf.rawNames.keys.sorted() == ["layers.1.attention.wo.weight", "norm.weight"])
    }

    @Test func torchTitanNamedSafetensorsAreClassified() throws {
        let dcp = try DCPCheckpoint(directory: Fixtures.url("dcp_tt_v03"))
        let tensors = try dcp.rawTensorInfos.keys.sorted().map { try dcp.loadRaw($0) }
        let folder = try makeTemporaryFolder()
        defer { cleanUp(folder) }
        try SafetensorsWriter.write(tensors, metadata: ["format": "pt"], to: folder.appendingPathComponent("model.safetensors"))
        let source = try openWeightSource(at: folder)
        #expect(source.namingEra == .v0_3)
        let expected = Fixtures.tensors("dcp_tt_v03")
        for (raw, name) in Fixtures.section("canonical", "dcp_tt_v03").compactMapValues({ $0 as? String }) {
            expectMatches(try source.load(name), expected[raw], name)
        }
    }
}
