import MoEModels

/// The MoE layer on the device, in `MoEBlock.apply`'s steps: route → dispatch → compute (one cuBLAS GEMM per
/// non-empty expert for w1|w3, SwiGLU, one for w2) → combine with the shared experts into the residual stream.
extension DeepSeekV3CUDA {
    /// One MoE layer's routing on the device: `[T, E]` gate logits (after the gate bias) and scores, `[T, K]`
    /// selected experts and combine weights.
    struct DeviceRouting {
        var gateLogits: DeviceBuffer
        var scores: DeviceBuffer
        var selected: DeviceBuffer
        var weights: DeviceBuffer
    }

    /// The assignments grouped by expert: rows `offsets[e]..<offsets[e+1]` of `input` go to expert `e`.
    struct DeviceExpertBatches {
        /// Copied to the host: the GEMM sizes per expert.
        var offsets: [Int]
        var rowOfAssignment: DevicePointer
        /// Gathered token rows `[assignments, D]` bf16.
        var input: DevicePointer
        var assignments: Int { offsets.last ?? 0 }
    }

    /// `hidden += MoE(x)`. `normed` is the layer's normed input in bf16 (the experts' input), `normedF32` the same
    /// in fp32 (the router's).
    func moeLayer(
        _ moe: MoE, layer: Int, normed: DevicePointer, normedF32: DevicePointer, tokens: Int, addInto hidden: DevicePointer,
        observer: RoutingObserver?
    ) throws {
        let routing = try route(moe, normedF32, tokens: tokens)
        if let observer { try report(routing, layer: layer, tokens: tokens, expertBias: moe.expertBiasValues, to: observer) }
        let batches = try dispatch(normed, routing, tokens: tokens)
        let expertOutputs = try computeExperts(moe.experts, batches)
        try combine(moe, routing, batches, expertOutputs, normed: normed, tokens: tokens, addInto: hidden)
    }

    // MARK: - Route

    func route(_ moe: MoE, _ x: DevicePointer, tokens: Int) throws -> DeviceRouting {
        let m = args.moeArgs, e = m.numExperts, k = m.topK, d = args.dim
        let groups = m.numExpertGroups ?? 0, limited = m.numLimitedGroups ?? groups
        let routing = DeviceRouting(
            gateLogits: try scratch.buffer("gate_logits", bytes: try deviceBytes(tokens, e, 4)),
            scores: try scratch.buffer("router_scores", bytes: try deviceBytes(tokens, e, 4)),
            selected: try scratch.buffer("selected", bytes: try deviceBytes(tokens, k, 4)),
            weights: try scratch.buffer("weights", bytes: try deviceBytes(tokens, k, 4)))
        let choice = try scratch.pointer("choice", bytes: try deviceBytes(tokens, e, 4))
        let groupScores = try scratch.pointer("group_scores", bytes: try deviceBytes(tokens, max(groups, 1), 4))
        let groupPick = try scratch.pointer("group_pick", bytes: try deviceBytes(tokens, max(groups, 1), 4))
        try runtime.launch(
            "router_gate_f32", .rows(tokens, threads: 256, sharedBytes: d * 4),
            [.pointer(x), .pointer(moe.gate.pointer), .pointer(routing.gateLogits.pointer), .int32(Int32(d)), .int32(Int32(e))])
        try runtime.launch(
            "router_select", LaunchShape(grid: ((tokens + 127) / 128, 1, 1), block: (128, 1, 1)),
            [.pointer(routing.gateLogits.pointer), .pointer(moe.gateBias?.pointer ?? 0), .pointer(moe.expertBias?.pointer ?? 0),
             .pointer(routing.scores.pointer), .pointer(choice), .pointer(groupScores), .pointer(groupPick),
             .pointer(routing.selected.pointer), .pointer(routing.weights.pointer), .int64(Int64(tokens)), .int32(Int32(e)),
             .int32(Int32(k)), .int32(Int32(groups)), .int32(Int32(limited)), .int32(m.scoreFunc == "sigmoid" ? 1 : 0),
             .int32(m.routeNorm ? 1 : 0), .float32(Float(m.routeScale))])
        return routing
    }

    /// Copies the layer's routing back (selected experts, weights, scores, gate logits) for the observer; only
    /// runs when one is attached.
    func report(_ routing: DeviceRouting, layer: Int, tokens: Int, expertBias: [Float]?, to observer: RoutingObserver) throws {
        let e = args.moeArgs.numExperts, k = args.moeArgs.topK
        let context = runtime.context
        let selected = try context.download(Int32.self, count: tokens * k, from: routing.selected.storage)
        let weights = try context.download(Float.self, count: tokens * k, from: routing.weights.storage)
        let scores = try context.download(Float.self, count: tokens * e, from: routing.scores.storage)
        let gateLogits = try context.download(Float.self, count: tokens * e, from: routing.gateLogits.storage)
        selected.withUnsafeBufferPointer { selected in
            weights.withUnsafeBufferPointer { weights in
                scores.withUnsafeBufferPointer { scores in
                    gateLogits.withUnsafeBufferPointer { gateLogits in
                        func decide(_ bias: UnsafeBufferPointer<Float>?) {
                            observer.observe(
                                RoutingDecision(
                                    layer: layer, tokenCount: tokens, topK: k, numExperts: e, experts: selected, weights: weights,
                                    scores: scores, gateLogits: gateLogits, expertBias: bias))
                        }
                        if let expertBias { expertBias.withUnsafeBufferPointer { decide($0) } } else { decide(nil) }
                    }
                }
            }
        }
    }

    // MARK: - Dispatch

    /// A stable counting sort of the (token, slot) assignments by expert on the device; the per-expert offsets
    /// come back to the host (they size the GEMMs); then the tokens are gathered into the buckets.
    func dispatch(_ x: DevicePointer, _ routing: DeviceRouting, tokens: Int) throws -> DeviceExpertBatches {
        let m = args.moeArgs, e = m.numExperts, k = m.topK, d = args.dim
        let assignments = try deviceBytes(tokens, k)
        let counts = try scratch.pointer("expert_counts", bytes: try deviceBytes(e, 4))
        let offsetsBuffer = try scratch.buffer("expert_offsets", bytes: try deviceBytes(e + 1, 4))
        let order = try scratch.pointer("expert_order", bytes: try deviceBytes(assignments, 4))
        let rowOfAssignment = try scratch.pointer("row_of_assignment", bytes: try deviceBytes(assignments, 4))
        let input = try scratch.pointer("expert_input", bytes: try deviceBytes(assignments, d, 2))
        try runtime.launch("fill_i32", .elements(e), [.pointer(counts), .int64(Int64(e)), .int32(0)])
        try runtime.launch(
            "moe_count", .elements(assignments),
            [.pointer(routing.selected.pointer), .int64(Int64(assignments)), .pointer(counts), .int32(Int32(e))])
        try runtime.launch("moe_offsets", LaunchShape(grid: (1, 1, 1), block: (1, 1, 1)), [.pointer(counts), .pointer(offsetsBuffer.pointer), .int32(Int32(e))])
        try runtime.launch(
            "moe_stable_order", LaunchShape(grid: ((e + 63) / 64, 1, 1), block: (64, 1, 1)),
            [.pointer(routing.selected.pointer), .int64(Int64(assignments)), .pointer(offsetsBuffer.pointer), .pointer(order),
             .pointer(rowOfAssignment), .int32(Int32(e))])
        try runtime.launch(
            "moe_gather", .elements(assignments * d),
            [.pointer(x), .pointer(order), .pointer(routing.weights.pointer), .int32(m.scoreBeforeExperts ? 1 : 0), .int32(Int32(k)),
             .pointer(input), .int64(Int64(assignments)), .int32(Int32(d))])
        let offsets = try runtime.context.download(Int32.self, count: e + 1, from: offsetsBuffer.storage).map(Int.init)
        guard offsets.last == assignments, zip(offsets, offsets.dropFirst()).allSatisfy({ $0 <= $1 }) else {
            throw CUDAForwardError("MoE dispatch: the device's expert offsets do not cover \(assignments) assignments (\(offsets))")
        }
        return DeviceExpertBatches(offsets: offsets, rowOfAssignment: rowOfAssignment, input: input)
    }

    // MARK: - Compute

    /// Each non-empty expert as one GEMM for w1|w3 and one for w2 (llama.cpp's approach); SwiGLU over all
    /// buckets at once in between. Returns fp32 `[assignments, D]` in bucket order.
    func computeExperts(_ experts: GatedFeedForward, _ batches: DeviceExpertBatches) throws -> DevicePointer {
        let d = args.dim, f = experts.hidden, rows = batches.assignments
        let gateUp = try scratch.pointer("expert_gate_up", bytes: try deviceBytes(rows, 2 * f, 4))
        let activated = try scratch.pointer("expert_activated", bytes: try deviceBytes(rows, f, 2))
        let outputs = try scratch.pointer("expert_outputs", bytes: try deviceBytes(rows, d, 4))
        let active = (0..<(batches.offsets.count - 1)).filter { batches.offsets[$0 + 1] > batches.offsets[$0] }
        for expert in active {
            let first = batches.offsets[expert], n = batches.offsets[expert + 1] - first
            try runtime.gemmBF16(
                m: n, n: 2 * f, k: d, x: batches.input + DevicePointer(first * d * 2),
                w: experts.w13.at(expert * 2 * f * d, elementSize: 2), y: gateUp + DevicePointer(first * 2 * f * 4), fp32Output: true)
        }
        try runtime.launch(
            "swiglu_fused_bf16", .elements(rows * f), [.pointer(gateUp), .pointer(activated), .int64(Int64(rows)), .int32(Int32(f))])
        for expert in active {
            let first = batches.offsets[expert], n = batches.offsets[expert + 1] - first
            try runtime.gemmBF16(
                m: n, n: d, k: f, x: activated + DevicePointer(first * f * 2), w: experts.w2.at(expert * d * f, elementSize: 2),
                y: outputs + DevicePointer(first * d * 4), fp32Output: true)
        }
        return outputs
    }

    // MARK: - Combine

    /// `hidden += shared(x) + Σ_k w_k·expert_k(x)` (without the weights when they were applied before the experts).
    func combine(
        _ moe: MoE, _ routing: DeviceRouting, _ batches: DeviceExpertBatches, _ expertOutputs: DevicePointer,
        normed: DevicePointer, tokens: Int, addInto hidden: DevicePointer
    ) throws {
        let d = args.dim, m = args.moeArgs
        var sharedOut: DevicePointer = 0
        if let shared = moe.shared {
            sharedOut = try scratch.pointer("shared_out", bytes: try deviceBytes(tokens, d, 4))
            try gatedFeedForward(shared, normed, rows: tokens, role: "shared", into: sharedOut)
        }
        try runtime.launch(
            "moe_combine", .elements(tokens * d),
            [.pointer(expertOutputs), .pointer(batches.rowOfAssignment), .pointer(routing.weights.pointer),
             .int32(m.scoreBeforeExperts ? 1 : 0), .int32(Int32(m.topK)), .pointer(sharedOut), .pointer(hidden),
             .int64(Int64(tokens)), .int32(Int32(d))])
    }
}
