import Foundation
import MoECheckpoint
import MoETensor

/// DeepSeek-V3's HF export plan: names and per-expert splitting follow TorchTitan's
/// `DeepSeekV3StateDictAdapter.to_hf`.
extension HFExportPlan {
    /// The routing bias stays fp32 under `bf16`, as in DeepSeek-V3's own HF checkpoint (transformers keeps
    /// `e_score_correction_bias` in fp32 whatever the model dtype).
    public static func isFloat32Always(_ hfName: String) -> Bool { hfName.hasSuffix(".mlp.gate.e_score_correction_bias") }

    /// `maxShardSize`: bytes per file; a shard closes before a tensor that would take it past the limit, and a
    /// tensor larger than the limit gets a file of its own (as transformers' `save_pretrained` shards).
    /// `routingBias`: false for an architecture without `e_score_correction_bias` (DeepSeek-V2), whose caller has
    /// checked that the checkpoint's bias is zero (`HFExport.routingBiasIsZero`); the bias is then not written.
    public init(source: WeightSource, dtype: HFExportDType, maxShardSize: Int, routingBias: Bool = true) throws {
        guard maxShardSize > 0 else { throw CheckpointError("maximum shard size must be positive (got \(maxShardSize))") }
        let infos = source.tensorInfos
        var keyed: [(key: OrderKey, tensor: HFExportTensor)] = []

        func outputDType(_ stored: DType, name: String) -> DType {
            guard stored.isFloatingPoint else { return stored }
            switch dtype {
            case .keep: return stored
            case .float32: return .float32
            case .bfloat16: return HFExportPlan.isFloat32Always(name) ? .float32 : .bfloat16
            }
        }

        for (canonical, info) in infos {
            if !routingBias && HFExportPlan.isRoutingBias(canonical) { continue }
            if HFNames.isGroupedExperts(canonical) {
                guard info.shape.count == 3 else {
                    throw CheckpointError(
                        "\(source.description): tensor '\(canonical)' is \(info.shape), not a stack of expert matrices [E, rows, columns]")
                }
                for expert in 0..<info.shape[0] {
                    guard let name = HFNames.toHF(experts: canonical, expert: expert) else {
                        throw CheckpointError("\(source.description): tensor '\(canonical)' has no HuggingFace DeepSeek-V3 name")
                    }
                    let t = HFExportTensor(
                        name: name, dtype: outputDType(info.dtype, name: name), shape: Array(info.shape.dropFirst()),
                        origin: .expert(canonical: canonical, expert: expert), sourceDType: info.dtype)
                    keyed.append((OrderKey(canonical: canonical, hfName: name, expert: expert), t))
                }
                continue
            }
            guard let name = HFNames.toHF(canonical) else {
                let why =
                    canonical.hasSuffix("moe.router.gate.bias")
                    ? "HF DeepSeek-V3's router has no bias (TorchTitan's gate_bias = true)"
                    : "it has no HuggingFace DeepSeek-V3 name"
                throw CheckpointError("\(source.description): tensor '\(canonical)' cannot be converted: \(why)")
            }
            let t = HFExportTensor(
                name: name, dtype: outputDType(info.dtype, name: name), shape: info.shape,
                origin: .whole(canonical: canonical), sourceDType: info.dtype)
            keyed.append((OrderKey(canonical: canonical, hfName: name, expert: -1), t))
        }
        // HF DeepSeek-V3 always holds a routing bias (transformers and vLLM read it); zeros select exactly as no bias does.
        for (canonical, info) in infos where routingBias && canonical.hasSuffix(".moe.router.gate.weight") {
            let layerPrefix = String(canonical.dropLast("moe.router.gate.weight".count))
            guard infos[layerPrefix + "moe.expert_bias"] == nil, let experts = info.shape.first,
                let name = HFNames.toHF(layerPrefix + "moe.expert_bias")
            else { continue }
            let t = HFExportTensor(name: name, dtype: .float32, shape: [experts], origin: .zeros, sourceDType: .float32)
            keyed.append((OrderKey(canonical: layerPrefix + "moe.expert_bias", hfName: name, expert: -1), t))
        }
        keyed.sort { $0.key < $1.key }
        try self.init(tensors: keyed.map(\.tensor), maxShardSize: maxShardSize)
    }

    /// Embedding first, layers in numeric order, then the final norm and the output head; within a layer,
    /// one-to-one tensors by HF name, then each grouped expert weight's experts in order.
    private struct OrderKey: Comparable {
        let section: Int, layer: Int, kind: Int, name: String, expert: Int
        init(canonical: String, hfName: String, expert: Int) {
            let parts = canonical.split(separator: ".")
            if parts.count > 1, parts[0] == "layers", let layer = Int(parts[1]) {
                section = 1
                self.layer = layer
            } else {
                section = canonical == "tok_embeddings.weight" ? 0 : (canonical == "norm.weight" ? 2 : 3)
                layer = 0
            }
            kind = expert >= 0 ? 1 : 0
            name = expert >= 0 ? canonical : hfName
            self.expert = expert
        }
        static func < (a: OrderKey, b: OrderKey) -> Bool {
            (a.section, a.layer, a.kind, a.name, a.expert) < (b.section, b.layer, b.kind, b.name, b.expert)
        }
    }
}

extension DeepSeekV3 {
    /// `convert` for DeepSeek-V3: `DeepseekV3ForCausalLM`, or `DeepseekV2ForCausalLM` for a softmax router
    /// without a selection bias, which it reproduces (HFConfigExport.architecture).
    static func hfConversion(_ request: HFConversionRequest) throws -> HFConversion {
        let spec = request.spec
        let opened: (any WeightSource)? = request.randomWeights == nil ? try openWeightSource(at: spec.checkpoint) : nil
        var resolved = try ModelLoader.resolveArgs(spec, source: opened)
        if let layers = request.randomWeights?.layers { resolved.args = try resolved.args.withLayers(layers) }
        let source: any WeightSource =
            opened ?? RandomWeightSource(args: resolved.args, dtype: request.dtype == .float32 ? .float32 : .bfloat16)
        if let config = resolved.config, !family.torchTitanModules.contains(config.modelName) {
            throw ModelArgsError(
                message:
                    "\(config.path): [model] name \"\(config.modelName)\" is not supported (moe-eval converts \(family.torchTitanModules.map { "\"\($0)\"" }.joined(separator: ", ")))"
            )
        }
        let args = resolved.args
        let problems = args.shapeMismatches(actual: source.tensorInfos.filter { $0.value.elementCount > 0 }.mapValues(\.shape))
        if let first = problems.first {
            throw ModelArgsError(
                message: "\(source.description): does not match the model args from \(resolved.origin): \(first)"
                    + (problems.count > 1 ? " (and \(problems.count - 1) more; see moe-eval inspect)" : ""))
        }
        let numerics = self.numerics(spec, args: args, source: source, hf: resolved.hf)
        let routingBiasIsZero = try HFExport.routingBiasIsZero(in: source)
        let architecture = HFConfigExport.architecture(args: args, routingBiasIsZero: routingBiasIsZero).architecture
        let plan = try HFExportPlan(
            source: source, dtype: request.dtype, maxShardSize: request.maxShardSize,
            routingBias: architecture.hasRoutingBias)
        let notes = HFConfigExport.transformersDifferences(args: args, numerics: numerics, routingBiasIsZero: routingBiasIsZero)
        let description =
            "\(architecture.rawValue) (\(architecture.modelType)), model args from \(resolved.origin); \(numerics.yarn ? "YaRN" : "no rope scaling"), final norm eps \(numerics.finalNormEps) (\(numerics.origin))"
        func configText(_ tokens: HFSpecialTokens) throws -> String {
            try HFConfigExport.configJSON(
                args: args, numerics: numerics, torchDType: mostBytesDType(of: plan),
                bosTokenId: tokens.bos, eosTokenId: tokens.eos, architecture: architecture)
        }
        // configJSON refuses what HF DeepSeek cannot express: refused here, before anything is written.
        _ = try configText(HFSpecialTokens())
        return HFConversion(sourceDescription: source.description, trainConfig: resolved.config) { folder, tokens, progress in
            let configText = try configText(tokens)
            try HFExport.write(plan, from: source, into: folder, progress: progress)
            try Data(configText.utf8).write(to: folder.appendingPathComponent("config.json"))
            return HFConversionSummary(plan: plan, config: description, notes: notes)
        }
    }

    /// The floating-point dtype most of the plan's bytes are in, as transformers names it.
    static func mostBytesDType(of plan: HFExportPlan) -> String {
        var bytes: [String: Int] = [:]
        for t in plan.tensors where t.dtype.isFloatingPoint { bytes[t.dtype.torchName, default: 0] += t.byteCount }
        return bytes.max { $0.value < $1.value }?.key ?? "float32"
    }
}
