import Foundation
import MoECheckpoint
import MoEJSON
import MoETensor
import Testing

@testable import MoEModels

/// gpt-oss reference fixtures written by tools/reference/make_family_fixtures.py with TorchTitan 0.3.0's own
/// `gpt_oss` model code (variant.json describes the math), plus the transformers GptOssForCausalLM copy in hf/.
enum GptOssFixtures {
    static var root: URL {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Fixtures/gpt_oss")
    }

    static var variants: [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: root.path)) ?? []
        return names.filter { FileManager.default.fileExists(atPath: root.appendingPathComponent("\($0)/expected.json").path) }.sorted()
    }

    static func json(_ variant: String, _ file: String) throws -> JSONValue {
        try JSONValue.parse([UInt8](Data(contentsOf: root.appendingPathComponent("\(variant)/\(file)"))))
    }

    static func args(_ variant: String) throws -> GptOssArgs {
        try GptOssArgs.load(jsonFile: root.appendingPathComponent("\(variant)/model_args.json"))
    }

    static func model(_ variant: String, checkpoint: String = "checkpoint") throws -> GptOss {
        try GptOss(args: args(variant), checkpoint: root.appendingPathComponent("\(variant)/\(checkpoint)"))
    }

    static func tokens(_ variant: String) throws -> [[Int32]] {
        let rows = try #require(try json(variant, "tokens.json")["tokens"]?.arrayValue)
        return try rows.map { row in try #require(row.arrayValue).map { Int32(try #require($0.intValue)) } }
    }

    /// `[batch][position][vocab]` logits and, per layer, `[token][slot]` experts of expected.json.
    static func expected(_ variant: String) throws -> (logits: [[[Float]]], experts: [Int: [[Int]]]) {
        let e = try json(variant, "expected.json")
        let logits = try #require(e["logits"]?.arrayValue).map { row in
            try #require(row.arrayValue).map { position in try #require(position.arrayValue).map { Float(try #require($0.doubleValue)) } }
        }
        var experts: [Int: [[Int]]] = [:]
        for (key, value) in try #require(e["routing"]?.objectValue).entries {
            experts[try #require(Int(key))] = try #require(value["experts"]?.arrayValue).map { token in
                try #require(token.arrayValue).map { try #require($0.intValue) }
            }
        }
        return (logits, experts)
    }
}

/// Collects each layer's selected experts in call order (one call per forward).
final class ExpertLog: RoutingObserver {
    var experts: [Int: [[Int]]] = [:]
    func observe(_ decision: RoutingDecision) {
        for t in 0..<decision.tokenCount {
            experts[decision.layer, default: []].append((0..<decision.topK).map { Int(decision.experts[t * decision.topK + $0]) })
        }
    }
}

struct LogitComparison {
    var maxDiff: Float = 0
    var maxLogit: Float = 0
    var nonFinite = 0
    mutating func add(_ ours: UnsafePointer<Float>, _ reference: [Float]) {
        for (v, value) in reference.enumerated() {
            if !ours[v].isFinite { nonFinite += 1 }
            maxDiff = max(maxDiff, abs(ours[v] - value))
            maxLogit = max(maxLogit, abs(value))
        }
    }
    var withinTolerance: Bool { nonFinite == 0 && maxDiff <= 1e-4 * max(1, maxLogit) }
}

/// Identical expert sets per token, in token order of (batch row, position).
func routingMismatches(_ ours: [Int: [[Int]]], _ reference: [Int: [[Int]]]) -> Int {
    var mismatches = 0
    for (layer, tokens) in reference {
        let mine = ours[layer] ?? []
        if mine.count != tokens.count { return Int.max }
        for (a, b) in zip(mine, tokens) where Set(a) != Set(b) { mismatches += 1 }
    }
    return ours.keys.sorted() == reference.keys.sorted() ? mismatches : Int.max
}

@Suite struct GptOssAgreementTests {
    @Test func fixturesArePresent() {
        #expect(GptOssFixtures.variants == ["v030_gptoss_bf16", "v030_gptoss_fp32"])
    }

    /// Prefill: max |Δlogit| ≤ 1e-4 · max(1, max|logit|) and identical expert sets on every token of every layer.
    @Test(arguments: GptOssFixtures.variants)
    func prefillMatchesTorchTitan(variant: String) throws {
        let model = try GptOssFixtures.model(variant)
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let log = ExpertLog()
        let batch = rows.count, seqLen = rows[0].count
        let logits = try model.forward(tokens: rows.flatMap { $0 }, batch: batch, seqLen: seqLen, observer: log)
        var c = LogitComparison()
        for b in 0..<batch { for t in 0..<seqLen { c.add(logits.row(b * seqLen + t), expected.logits[b][t]) } }
        #expect(c.withinTolerance, "\(variant): max |Δlogit| \(c.maxDiff) for max |logit| \(c.maxLogit), \(c.nonFinite) non-finite")
        #expect(routingMismatches(log.experts, expected.experts) == 0, "\(variant): routed to other experts")
        let info = try GptOssFixtures.json(variant, "variant.json")
        let scale = try #require(info["softmax_scale"]?.doubleValue)
        #expect(abs(Double(model.softmaxScale) - scale) <= 1e-6 * scale)
        #expect(model.args.yarnActive == info["yarn_active"]?.boolValue)
    }

    /// Decode: one token at a time through the KV cache (after a 3-token prefill), so the window of layer 0 (4)
    /// slides past the first positions and the sinks are applied to cached keys.
    @Test(arguments: GptOssFixtures.variants)
    func cachedDecodeMatchesTorchTitan(variant: String) throws {
        let model = try GptOssFixtures.model(variant)
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let batch = rows.count, seqLen = rows[0].count, prefill = 3
        let cache = KVCache(model: model, batch: batch, capacity: seqLen)
        var perStep: [ExpertLog] = []
        var c = LogitComparison()
        var position = 0
        while position < seqLen {
            let n = position == 0 ? prefill : 1
            let log = ExpertLog()
            let step = rows.flatMap { Array($0[position..<(position + n)]) }
            let logits = try model.forward(tokens: step, batch: batch, seqLen: n, cache: cache, observer: log)
            for b in 0..<batch { for i in 0..<n { c.add(logits.row(b * n + i), expected.logits[b][position + i]) } }
            perStep.append(log)
            position += n
        }
        #expect(cache.length == seqLen)
        #expect(c.withinTolerance, "\(variant) decode: max |Δlogit| \(c.maxDiff) for max |logit| \(c.maxLogit)")
        // Reassemble (batch row, position) order from the steps' (batch row, step position) order.
        var assembled: [Int: [[Int]]] = [:]
        for layer in expected.experts.keys {
            var byRow = [[[Int]]](repeating: [], count: batch)
            for (index, log) in perStep.enumerated() {
                let n = index == 0 ? prefill : 1
                let tokens = log.experts[layer] ?? []
                for b in 0..<batch { byRow[b] += tokens[(b * n)..<(b * n + n)] }
            }
            assembled[layer] = byRow.flatMap { $0 }
        }
        #expect(routingMismatches(assembled, expected.experts) == 0, "\(variant) decode: routed to other experts")
    }

    /// The transformers GptOssForCausalLM copy (HF names, `[E, D, 2F]` experts) gives TorchTitan's numbers too, and
    /// agrees with transformers' own last-position logits.
    @Test func huggingFaceCopyMatches() throws {
        let variant = "v030_gptoss_fp32"
        let hfConfig = try #require(try GptOssFixtures.json(variant, "hf/config.json").objectValue)
        let args = try GptOssArgs.fromHFConfig(hfConfig, source: "hf/config.json")
        var fixtureArgs = try GptOssFixtures.args(variant)
        #expect(args.moeArgs.loadBalanceCoeff == nil)
        fixtureArgs.moeArgs.loadBalanceCoeff = nil
        #expect(args == fixtureArgs)
        let model = try GptOss(args: args, checkpoint: GptOssFixtures.root.appendingPathComponent("\(variant)/hf"))
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let batch = rows.count, seqLen = rows[0].count
        let log = ExpertLog()
        let logits = try model.forward(tokens: rows.flatMap { $0 }, batch: batch, seqLen: seqLen, observer: log)
        var c = LogitComparison()
        for b in 0..<batch { for t in 0..<seqLen { c.add(logits.row(b * seqLen + t), expected.logits[b][t]) } }
        #expect(c.withinTolerance, "hf: max |Δlogit| \(c.maxDiff)")
        #expect(routingMismatches(log.experts, expected.experts) == 0)
        let transformers = try #require(try GptOssFixtures.json(variant, "hf_expected.json")["logits"]?.arrayValue)
        var t = LogitComparison()
        for b in 0..<batch {
            t.add(logits.row(b * seqLen + seqLen - 1), try #require(transformers[b].arrayValue).map { Float(try #require($0.doubleValue)) })
        }
        #expect(t.withinTolerance, "hf vs transformers: max |Δlogit| \(t.maxDiff)")
    }

    /// Changing what the fixture says matters (sinks, window) changes the logits: the checks above can fail.
    @Test func sinksAndWindowMatter() throws {
        let variant = "v030_gptoss_fp32"
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let batch = rows.count, seqLen = rows[0].count
        for change in ["no window", "no sinks"] {
            var args = try GptOssFixtures.args(variant)
            if change == "no window" { args.slidingWindowLayers = [] } else { args.attentionSinks = false }
            let weights = try GptOssWeightSet(
                store: GptOssWeights.openStore(at: GptOssFixtures.root.appendingPathComponent("\(variant)/checkpoint")),
                args: args, allowUnused: true)
            let logits = try GptOss(weights: weights).forward(tokens: rows.flatMap { $0 }, batch: batch, seqLen: seqLen)
            var c = LogitComparison()
            for b in 0..<batch { for t in 0..<seqLen { c.add(logits.row(b * seqLen + t), expected.logits[b][t]) } }
            #expect(c.maxDiff > 1e-2, "\(change): logits did not change (\(c.maxDiff))")
        }
    }
}

@Suite struct GptOssArgsTests {
    static let golden: JSONValue = {
        let url = GptOssFixtures.root.appendingPathComponent("torchtitan030_gptoss_registry.json")
        return (try? JSONValue.parse([UInt8](Data(contentsOf: url)))) ?? .null
    }()
    static var configNames: [String] { golden["configs"]?.objectValue?.keys.sorted() ?? [] }

    @Test func everyGoldenConfigIsKnown() {
        #expect(Self.configNames.count == 4)
        #expect(GptOssConfigs.names == Self.configNames)
    }

    /// Every field, the training seq_len and the FLOPs TorchTitan's own `get_nparams_and_flops` reported.
    @Test(arguments: configNames)
    func registryConfigMatchesTorchTitan(name: String) throws {
        let golden = try #require(Self.golden["configs"]?[name])
        let (entry, args) = try GptOssConfigs.args(config: name)
        #expect(entry.seqLen == golden["seq_len"]?.intValue)
        #expect(entry.flavor == golden["flavor"]?.stringValue)
        #expect(entry.hfAssetsPath == golden["hf_assets_path"]?.stringValue)
        #expect(entry.dataset == golden["dataset"]?.stringValue)
        #expect(entry.expertParallelDegree == golden["expert_parallel_degree"]?.intValue)
        #expect(entry.checkpointInterval == golden["checkpoint_interval"]?.intValue)
        let goldenArgsObject = try #require(golden["model_args"]?.objectValue)
        let want = try GptOssArgs(fields: goldenArgsObject, source: name)
        #expect(entry.args == want)
        // Decoding fills defaults for absent fields; the golden names every field so none is a default by accident.
        #expect(Set(goldenArgsObject.keys) == Set(GptOssArgs.CodingKeys.allCases.map(\.rawValue) + ["family"]))
        let cost = try args.torchTitanParamsAndFlops(seqLen: entry.seqLen)
        #expect(cost.parameters == golden["nparams"]?.intValue)
        #expect(cost.flopsPerToken == golden["flops_per_token"]?.intValue)
    }

    @Test(arguments: GptOssFixtures.variants)
    func fixtureFlopsMatchTorchTitan(variant: String) throws {
        let args = try GptOssFixtures.args(variant)
        let golden = try #require(Self.golden["fixtures"]?[variant]?.objectValue)
        #expect(golden.count == 2)
        for (seqLen, record) in golden.entries {
            let cost = try args.torchTitanParamsAndFlops(seqLen: try #require(Int(seqLen)))
            #expect(cost.parameters == record["nparams"]?.intValue)
            #expect(cost.flopsPerToken == record["flops_per_token"]?.intValue, "seq_len \(seqLen)")
        }
    }

    /// `--module gpt_oss --config NAME` (and the name alone) resolves through the shared registry.
    @Test func sharedRegistryResolvesGptOssConfigs() throws {
        #expect(ConfigRegistry.modules.contains("gpt_oss"))
        #expect(ConfigRegistry.names(module: "gpt_oss") == GptOssConfigs.names)
        for module in ["gpt_oss", nil] as [String?] {
            let config = try ConfigRegistry.config(module: module, name: "gpt_oss_20b", seqLen: 4096)
            #expect(config.modelName == "gpt_oss" && config.flavor == "20b" && config.seqLen == 4096)
            #expect(config.familyArgs as? GptOssArgs == (try GptOssConfigs.args(config: "gpt_oss_20b", seqLen: 4096).args))
        }
        #expect(throws: ModelArgsError.self) { try ConfigRegistry.config(module: "deepseek_v3", name: "gpt_oss_20b") }
    }

    @Test func seqLenOverrideAndLimit() throws {
        #expect(try GptOssConfigs.args(config: "gpt_oss_20b", seqLen: 1024).args.maxSeqLen == 1024)
        #expect(throws: ModelArgsError.self) { try GptOssConfigs.args(config: "gpt_oss_20b", seqLen: 131_073) }
        #expect(throws: ModelArgsError.self) { try GptOssConfigs.args(config: "gpt_oss_20b", seqLen: 0) }
        #expect(throws: ModelArgsError.self) { try GptOssConfigs.args(config: "gpt_oss_40b") }
    }

    /// Each malformed field gives one error naming the field; nothing is allocated for absurd sizes.
    @Test(arguments: [
        (#"{"n_heads": 6, "n_kv_heads": 4}"#, "n_kv_heads"),
        (#"{"head_dim": 15}"#, "head_dim"),
        (#"{"dim": -1}"#, "dim"),
        (#"{"vocab_size": 9223372036854775807}"#, "too large"),
        (#"{"moe_args": {"top_k": 40}}"#, "top_k"),
        (#"{"moe_args": {"num_shared_experts": 1}}"#, "num_shared_experts"),
        (#"{"moe_args": {"score_before_experts": true}}"#, "score_before_experts"),
        (#"{"moe_args": {"topk": 2}}"#, "moe_args.topk"),
        (#"{"sliding_window_layers": [0, 99]}"#, "sliding_window_layers"),
        (#"{"rope_scaling": {"type": "llama"}}"#, "rope_scaling.type"),
        (#"{"rope_scaling": {"rope_factor": "4"}}"#, "rope_scaling.rope_factor"),
        (#"{"swiglu_limit": -1}"#, "swiglu_limit"),
        (#"{"n_layers": 1000000000}"#, "n_layers"),
        (#"{"family": "qwen3"}"#, "family"),
        (#"{"dimension": 4}"#, "dimension"),
        (#"{"dim": 4"#, "malformed JSON"),
    ])
    func malformedArgsAreRefused(json: String, mentions: String) {
        do {
            _ = try GptOssArgs.decode(json: Data(json.utf8), source: "args.json")
            Issue.record("accepted \(json)")
        } catch {
            let message = "\(error)"
            #expect(message.hasPrefix("args.json: ") && message.contains(mentions), "\(message)")
        }
    }

    @Test func jsonRoundTrip() throws {
        let args = try GptOssFixtures.args("v030_gptoss_fp32")
        let again = try GptOssArgs.decode(json: Data(JSONValue.object(args.jsonObject).serialized.utf8), source: "round trip")
        #expect(again == args)
        let hf = try GptOssArgs.fromHFConfig(args.hfConfig(), source: "exported")
        var noBias = args
        noBias.moeArgs.loadBalanceCoeff = nil
        #expect(hf == noBias)
    }

    @Test func yarnFrequenciesKeepTheFractionalRamp() {
        // Low/high correction dims of the fixture: 16·ln(64/(32·2π))/(2·ln 150000) < 0 → 0, and ≈ 1.83 (not ceil'd to 2).
        let f = YaRNFrequencies.frequencies(
            rotatedDims: 16, theta: 150_000, factor: 4, betaFast: 32, betaSlow: 1, originalSeqLen: 64, truncate: false)
        let plain = RotaryTable.frequencies(theta: 150_000, rotatedDims: 16)
        let high = 16 * log(64 / (2 * Double.pi)) / (2 * log(150_000.0))
        #expect(f[0] == plain[0])
        let ramp = Float(1 / high)
        #expect(abs(f[1] - (plain[1] / 4 * ramp + plain[1] * (1 - ramp))) <= 1e-9)
        #expect(f[2] == plain[2] / 4)
        let truncated = YaRNFrequencies.frequencies(
            rotatedDims: 16, theta: 150_000, factor: 4, betaFast: 32, betaSlow: 1, originalSeqLen: 64, truncate: true)
        #expect(truncated[1] != f[1])
    }

    @Test func clampedSwiGLU() {
        // gate, linear interleaved: (2, 0.5) → clamp gate to 1.5; (-3, 9) → linear clamped to 1.5.
        let h: [Float] = [2, 0.5, -3, 9]
        var y = [Float](repeating: 0, count: 2)
        ClampedSwiGLU.activate(h, rows: 1, hidden: 2, alpha: 1.702, limit: 1.5, into: &y)
        func glu(_ g: Float) -> Float { g / (1 + expf(-1.702 * g)) }
        #expect(abs(y[0] - glu(1.5) * 1.5) <= 1e-6)
        #expect(abs(y[1] - glu(-3) * 2.5) <= 1e-6)
    }
}

/// `GptOssForCausalLM` export (what `moe-eval convert` writes for gpt_oss) against the committed hf/ copy, which
/// transformers reproduced TorchTitan's logits from (variant.json "hf").
@Suite struct GptOssHFExportTests {
    func exported(_ variant: String, dtype: DType? = nil, maxShardSize: Int = 1 << 30) throws -> (URL, GptOssHFExport.Summary) {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("gptoss-export-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let weights = try GptOssWeightSet(
            store: GptOssWeights.openStore(at: GptOssFixtures.root.appendingPathComponent("\(variant)/checkpoint")),
            args: GptOssFixtures.args(variant))
        return (folder, try GptOssHFExport.write(weights, dtype: dtype, maxShardSize: maxShardSize, into: folder))
    }

    @Test func exportEqualsTheCommittedHuggingFaceCopy() throws {
        let (folder, summary) = try exported("v030_gptoss_fp32")
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(summary.files == ["model.safetensors"] && summary.notes.isEmpty)
        let ours = try SafetensorsCheckpoint(url: folder)
        let golden = try SafetensorsCheckpoint(url: GptOssFixtures.root.appendingPathComponent("v030_gptoss_fp32/hf"))
        #expect(Set(ours.rawTensorInfos.keys) == Set(golden.rawTensorInfos.keys))
        for name in golden.rawTensorInfos.keys.sorted() {
            let a = try ours.loadRaw(name), b = try golden.loadRaw(name)
            #expect(a.shape == b.shape && a.dtype == b.dtype, "\(name)")
            #expect(a.bytes.elementsEqual(b.bytes), "\(name): bytes differ")
        }
        let config = try #require(try JSONValue.parse([UInt8](Data(contentsOf: folder.appendingPathComponent("config.json")))).objectValue)
        let goldenConfig = try #require(try GptOssFixtures.json("v030_gptoss_fp32", "hf/config.json").objectValue)
        func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
            if let x = a.doubleValue, let y = b.doubleValue { return x == y }
            if let x = a.objectValue, let y = b.objectValue {
                return Set(x.keys) == Set(y.keys) && x.keys.allSatisfy { same(x[$0]!, y[$0]!) }
            }
            return a == b
        }
        for key in config.keys {
            let mine = try #require(config[key]), theirs = try #require(goldenConfig[key], "\(key) not in transformers' config")
            #expect(same(mine, theirs), "config.json \(key): \(mine.serialized) vs \(theirs.serialized)")
        }
    }

    /// The bf16 export read back (HF names, sharded) gives TorchTitan's logits.
    @Test func shardedBF16ExportReadsBack() throws {
        let variant = "v030_gptoss_bf16"
        let (folder, summary) = try exported(variant, maxShardSize: 16_000)
        defer { try? FileManager.default.removeItem(at: folder) }
        #expect(summary.files.count > 1 && summary.dtypes == ["bfloat16"])
        #expect(FileManager.default.fileExists(atPath: folder.appendingPathComponent("model.safetensors.index.json").path))
        var args = try GptOssFixtures.args(variant)
        args.moeArgs.loadBalanceCoeff = nil
        let model = try GptOss(args: args, checkpoint: folder)
        let rows = try GptOssFixtures.tokens(variant), expected = try GptOssFixtures.expected(variant)
        let batch = rows.count, seqLen = rows[0].count
        let logits = try model.forward(tokens: rows.flatMap { $0 }, batch: batch, seqLen: seqLen)
        var c = LogitComparison()
        for b in 0..<batch { for t in 0..<seqLen { c.add(logits.row(b * seqLen + t), expected.logits[b][t]) } }
        #expect(c.withinTolerance, "max |Δlogit| \(c.maxDiff)")
    }

    @Test func bfloat16RoundsToNearestEven() {
        #expect(GptOssHFExport.bfloat16Bits(1) == 0x3F80)
        #expect(GptOssHFExport.bfloat16Bits(Float(bitPattern: 0x3F80_8000)) == 0x3F80) // tie → even
        #expect(GptOssHFExport.bfloat16Bits(Float(bitPattern: 0x3F81_8000)) == 0x3F82) // tie → even
        #expect(GptOssHFExport.bfloat16Bits(Float(bitPattern: 0x3F80_8001)) == 0x3F81)
    }
}

/// Checkpoints that do not match the args are refused before any tensor is read, naming the tensor.
@Suite struct GptOssWeightCheckTests {
    func refusal(_ change: (inout GptOssArgs) -> Void, checkpoint: String = "checkpoint") throws -> String {
        var args = try GptOssFixtures.args("v030_gptoss_fp32")
        change(&args)
        do {
            _ = try GptOss(args: args, checkpoint: GptOssFixtures.root.appendingPathComponent("v030_gptoss_fp32/\(checkpoint)"))
            return ""
        } catch {
            return "\(error)"
        }
    }

    @Test func mismatchesNameTheTensor() throws {
        #expect(try refusal { $0.nLayers = 3 }.contains("tensor layers.2.attention_norm.weight is missing"))
        #expect(try refusal { $0.nLayers = 1 }.contains("not used by the gpt_oss model args (e.g. layers.1."))
        #expect(
            try refusal { $0.moeInterDim = 8 }.contains("mlp1_weight_EGD has shape [4, 8, 32] but the gpt_oss model args imply [4, 16, 32]")
        )
        #expect(
            try refusal(
                {
                    $0.moeInterDim = 8; $0.moeArgs.loadBalanceCoeff = nil
                }, checkpoint: "hf"
            ).contains("model.layers.0.mlp.experts.gate_up_proj has shape [4, 32, 8] but the gpt_oss model args imply [4, 32, 16]"))
        // HF GptOssForCausalLM has no load-balancing bias.
        #expect(try refusal({ _ in }, checkpoint: "hf").contains("have no layers.0.moe.expert_bias_E"))
        #expect(try refusal { $0.qkvBias = false }.contains("not used by the gpt_oss model args"))
    }
}
