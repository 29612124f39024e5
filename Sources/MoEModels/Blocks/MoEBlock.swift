import MoECheckpoint
import MoETensor

/// How a router turns gate logits into expert choices and combine weights (TorchTitan's
/// `TokenChoiceTopKRouter` and the `MoE` module around it). Every family fills one from its own args.
public struct RouterConfig: Sendable, Equatable {
    public enum ScoreFunction: String, Sendable { case softmax, sigmoid }

    public var scoreFunction: ScoreFunction
    public var numExperts: Int
    public var topK: Int
    /// Node-limited routing: experts split into this many groups, of which `numLimitedGroups` (ranked by the
    /// sum of each group's two best scores) may be chosen. Nil: no groups.
    public var numExpertGroups: Int?
    public var numLimitedGroups: Int?
    /// Divide the selected scores by their sum.
    public var routeNorm: Bool
    public var routeScale: Float
    /// Multiply the tokens by their routing weight before the experts (TorchTitan's `score_before_experts`)
    /// instead of the expert outputs after.
    public var scoreBeforeExperts: Bool

    public init(
        scoreFunction: ScoreFunction, numExperts: Int, topK: Int, numExpertGroups: Int? = nil,
        numLimitedGroups: Int? = nil, routeNorm: Bool, routeScale: Float, scoreBeforeExperts: Bool
    ) {
        self.scoreFunction = scoreFunction; self.numExperts = numExperts; self.topK = topK
        self.numExpertGroups = numExpertGroups; self.numLimitedGroups = numLimitedGroups
        self.routeNorm = routeNorm; self.routeScale = routeScale; self.scoreBeforeExperts = scoreBeforeExperts
    }
}

/// What one routed expert computes on its rows. A new variant is a new case here plus its branch in
/// `MoEBlock.computeExpert` (and a check in `MoEBlock.init`).
public enum ExpertActivation: Sendable, Equatable {
    /// `w2(silu(w1·x) ⊙ w3·x)`, no biases (DeepSeek-V3, Qwen3-MoE).
    case swiGLU
    /// gpt-oss: `w1 [E, 2F, D]` (+ `b1`) gives gate and linear columns interleaved; `ClampedSwiGLU`
    /// clamps them at `limit` and computes `g·σ(α·g)·(lin + 1)`; then `w2` (+ `b2`). No `w3`.
    case clampedSwiGLU(alpha: Float, limit: Float)

    /// Floats per row of the first projection's output (the scratch a bucket row needs there).
    var firstProjectionWidth: Int { if case .clampedSwiGLU = self { return 2 } else { return 1 } }
}

/// The routed experts' weights, stacked by expert. Under expert parallelism only this rank's experts are held
/// (index 0 is the rank's first local expert).
public struct ExpertWeights: @unchecked Sendable {
    /// `[E, F, D]` (gate projection).
    public var w1: Weight
    /// `[E, D, F]` (down projection).
    public var w2: Weight
    /// `[E, F, D]` (up projection); nil for a variant that fuses gate and up into `w1`.
    public var w3: Weight?
    /// Per-expert biases of `w1`, `w2`, `w3` (`[E, F]`, `[E, D]`, `[E, F]`, flattened), for variants that have them.
    public var b1: [Float]?
    public var b2: [Float]?
    public var b3: [Float]?

    public init(w1: Weight, w2: Weight, w3: Weight?, b1: [Float]? = nil, b2: [Float]? = nil, b3: [Float]? = nil) {
        self.w1 = w1; self.w2 = w2; self.w3 = w3; self.b1 = b1; self.b2 = b2; self.b3 = b3
    }

    /// The same experts with each matrix stack in the layout its products run fastest from with `compute`
    /// (`Linear.packedForProducts`).
    public func packedForProducts(compute: ComputePrecision) -> ExpertWeights {
        func pack(_ w: Weight) -> Weight { Linear.packedForProducts(w, compute: compute) }
        return ExpertWeights(w1: pack(w1), w2: pack(w2), w3: w3.map(pack), b1: b1, b2: b2, b3: b3)
    }

    /// Bytes of the held experts' matrices and biases.
    public var byteCount: Int {
        w1.byteCount + w2.byteCount + (w3?.byteCount ?? 0)
            + ((b1?.count ?? 0) + (b2?.count ?? 0) + (b3?.count ?? 0)) * MemoryLayout<Float>.size
    }
}

extension Linear {
    /// An expert stack stored one tensor per expert (HF checkpoints: `loadParts`) packed straight into panels as
    /// `ExpertWeights.packedForProducts` would pack it, skipping the stacked copy; nil when the stack is stored
    /// whole, or would not be packed — the caller then loads it as usual.
    static func packedForProducts(expertParts parts: [StoredTensor]?, compute: ComputePrecision) -> Weight? {
        guard let parts, let first = parts.first, first.shape.count == 2,
            parts.allSatisfy({ $0.dtype == first.dtype && $0.shape == first.shape })
        else { return nil }
        return packedForProducts(
            parts: parts.map(\.bytes), dtype: first.dtype, rows: first.shape[0], columns: first.shape[1], compute: compute)
    }
}

/// Experts every token passes through besides the routed ones. (qwen3_5's sigmoid-gated shared expert,
/// `sigmoid(gate·x) ⊙ ffn(x)`, belongs here as a second case.)
public enum SharedExperts: @unchecked Sendable {
    case plain(FeedForward)

    var byteCount: Int {
        switch self {
        case .plain(let ffn): return ffn.byteCount
        }
    }

    /// Writes (not adds) the shared experts' output for `x` into `output`.
    func apply(_ x: Tensor, into output: Tensor, backend: any TensorBackend) {
        switch self {
        case .plain(let ffn): ffn.apply(x, addInto: output, accumulate: false, backend: backend)
        }
    }
}

/// One MoE layer in three visible steps — route → dispatch → compute → combine — shared by every family.
/// Expert parallelism (`ExpertParallelGroup.runExperts`) sits between dispatch and combine, and the routing
/// observer sees each decision right after routing.
public struct MoEBlock: @unchecked Sendable {
    public let router: RouterConfig
    /// `[E, D]` router gate.
    public let gate: Weight
    /// Added to the gate logits before scoring (gpt-oss's router bias).
    public let gateBias: [Float]?
    /// Load-balancing bias added to the scores for selection only (never to the combine weights).
    public let expertBias: [Float]?
    public let experts: ExpertWeights
    public let activation: ExpertActivation
    public let shared: SharedExperts?
    /// Model width D and routed-expert hidden width F.
    public let dim: Int
    public let expertHiddenDim: Int
    /// Where the block's tensor operations run.
    public var backend: any TensorBackend

    public init(
        router: RouterConfig, gate: Weight, gateBias: [Float]? = nil, expertBias: [Float]? = nil,
        experts: ExpertWeights, activation: ExpertActivation, shared: SharedExperts?,
        dim: Int, expertHiddenDim: Int, backend: any TensorBackend = CPUBackend()
    ) throws {
        switch activation {
        case .swiGLU:
            guard experts.w3 != nil, experts.b1 == nil, experts.b2 == nil, experts.b3 == nil else {
                throw ModelLoadError("MoE block: plain SwiGLU experts need w1, w2, w3 and no biases")
            }
        case .clampedSwiGLU:
            let held = experts.w1.shape.first ?? 0
            guard experts.w3 == nil, experts.b3 == nil, experts.w1.rows == held * 2 * expertHiddenDim,
                experts.b1?.count == held * 2 * expertHiddenDim, experts.b2?.count == held * dim
            else {
                throw ModelLoadError("MoE block: clamped SwiGLU experts need w1 [E, 2F, D], w2, biases b1 [E, 2F] and b2 [E, D], no w3")
            }
        }
        guard gateBias.map({ $0.count == router.numExperts }) ?? true,
            expertBias.map({ $0.count == router.numExperts }) ?? true
        else {
            throw ModelLoadError("MoE block: router biases must have one value per expert (\(router.numExperts))")
        }
        self.router = router; self.gate = gate; self.gateBias = gateBias; self.expertBias = expertBias
        // Repacked once here rather than by oneDNN on every product (`Linear.packedForProducts`).
        self.experts = experts.packedForProducts(compute: (backend as? CPUBackend)?.compute ?? .fp32)
        self.activation = activation; self.shared = shared
        self.dim = dim; self.expertHiddenDim = expertHiddenDim
        self.backend = backend
    }

    /// `hidden += MoE(x)` for the MoE layer `layer` (its index among all layers, for the observer and the
    /// expert-parallel statistics).
    public func apply(
        _ x: Tensor, layer: Int, addInto hidden: Tensor, observer: RoutingObserver?,
        expertParallel: ExpertParallelGroup?
    ) throws {
        let routing = route(x)
        if let observer {
            routing.withDecision(layer: layer, expertBias: expertBias) { observer.observe($0) }
        }
        let batches = dispatch(x, routing)
        let expertOutputs =
            try expertParallel?.runExperts(batches, layer: layer) { computeExperts($0) }
            ?? computeExperts(batches)
        combine(x, routing, batches, expertOutputs, addInto: hidden)
    }

    // MARK: - Bytes (for ModelFootprint)

    /// Router gate matrix bytes.
    public var gateBytes: Int { gate.byteCount }
    /// Router bias vectors (gate bias, expert bias).
    public var routerVectorBytes: Int { ((gateBias?.count ?? 0) + (expertBias?.count ?? 0)) * MemoryLayout<Float>.size }
    public var sharedBytes: Int { shared?.byteCount ?? 0 }
    /// Held routed experts (only the local ones under expert parallelism).
    public var expertBytes: Int { experts.byteCount }

    // MARK: - Route

    /// Router: fp32 gate (+ gate bias) → softmax/sigmoid scores; the expert bias shifts scores for *selection
    /// only*; optional node-limited groups; top-k; weights from unbiased scores, route_norm, route_scale.
    func route(_ x: Tensor) -> Routing {
        let m = router, e = m.numExperts, k = m.topK, tokens = x.rows, backend = backend
        let routing = Routing(tokens: tokens, topK: k, experts: e)
        backend.fp32Products.linear(x.data, rows: tokens, weight: gate, into: routing.gateLogits.data, accumulate: false)
        if let gateBias { backend.addBias(gateBias, to: routing.gateLogits.data, rows: tokens, width: e) }
        let sigmoid = m.scoreFunction == .sigmoid
        let groups = m.numExpertGroups, limited = m.numLimitedGroups ?? (m.numExpertGroups ?? 1)
        let expertBias = expertBias
        let routeNorm = m.routeNorm, routeScale = m.routeScale
        let logitsP = SendablePointer(routing.gateLogits.data), scoresP = SendablePointer(routing.scores.data)
        let selP = SendablePointer(routing.selected), wP = SendablePointer(routing.weights)
        Compute.parallelRanges(tokens) { _, range in
            let choice = UnsafeMutablePointer<Float>.allocate(capacity: e)
            let groupScores = UnsafeMutablePointer<Float>.allocate(capacity: max(groups ?? 1, 1))
            let groupPick = UnsafeMutablePointer<Int32>.allocate(capacity: max(groups ?? 1, 1))
            let pair = UnsafeMutablePointer<Int32>.allocate(capacity: 2)
            defer { choice.deallocate(); groupScores.deallocate(); groupPick.deallocate(); pair.deallocate() }
            for t in range {
                let logits = logitsP.pointer + t * e, scores = scoresP.pointer + t * e
                if sigmoid {
                    backend.sigmoid(logits, into: scores, count: e)
                } else {
                    scores.update(from: logits, count: e)
                    backend.softmaxRow(scores, e)
                }
                for j in 0..<e { choice[j] = scores[j] + (expertBias?[j] ?? 0) }
                if let groups {
                    let perGroup = e / groups
                    for g in 0..<groups {
                        backend.topK(choice + g * perGroup, perGroup, 2, into: pair)
                        groupScores[g] = choice[g * perGroup + Int(pair[0])] + choice[g * perGroup + Int(pair[1])]
                    }
                    backend.topK(groupScores, groups, limited, into: groupPick)
                    for g in 0..<groups where !(0..<limited).contains(where: { groupPick[$0] == Int32(g) }) {
                        (choice + g * perGroup).update(repeating: -.infinity, count: perGroup)
                    }
                }
                let sel = selP.pointer + t * k, w = wP.pointer + t * k
                backend.topK(choice, e, k, into: sel)
                var sum: Float = 0
                for j in 0..<k { w[j] = scores[Int(sel[j])]; sum += w[j] }
                if routeNorm {
                    let denominator = sum + 1e-20
                    for j in 0..<k { w[j] /= denominator }
                }
                for j in 0..<k { w[j] *= routeScale }
            }
        }
        return routing
    }

    // MARK: - Dispatch

    /// A counting sort of (token, slot) by expert, stable in token order — TorchTitan's argsort(stable=True) —
    /// then the tokens gathered into per-expert buckets.
    func dispatch(_ x: Tensor, _ routing: Routing) -> ExpertBatches {
        let e = routing.experts, k = routing.topK, d = dim
        let assignments = routing.tokens * k
        var offsets = [Int](repeating: 0, count: e + 1)
        for i in 0..<assignments { offsets[Int(routing.selected[i]) + 1] += 1 }
        for j in 0..<e { offsets[j + 1] += offsets[j] }
        var order = [Int](repeating: 0, count: assignments)
        var next = offsets
        for i in 0..<assignments {
            let expert = Int(routing.selected[i])
            order[next[expert]] = i
            next[expert] += 1
        }
        let input = Tensor(shape: [assignments, d])
        let scoreBefore = router.scoreBeforeExperts
        for (row, a) in order.enumerated() {
            let src = x.row(a / k), dst = input.row(row)
            if scoreBefore {
                let w = routing.weights[a]
                for c in 0..<d { dst[c] = src[c] * w }
            } else {
                dst.update(from: src, count: d)
            }
        }
        return ExpertBatches(experts: e, width: d, offsets: offsets, assignment: order, input: input)
    }

    // MARK: - Compute

    /// Each active expert over its bucket as one GEMM per weight. `batches` is indexed by *held* expert (local
    /// under expert parallelism). Returns `[assignments, D]` in the same bucketed order as `batches.input`.
    func computeExperts(_ batches: ExpertBatches) -> Tensor {
        let d = dim, f = expertHiddenDim
        let outputs = Tensor(uninitializedShape: [batches.input.rows, d])
        let active = (0..<batches.experts).filter { !batches.rows(of: $0).isEmpty }
        // Enough experts to keep every worker busy: one expert per task, each with single-threaded GEMMs
        // (no synchronisation inside an expert, and small buckets do not split into tiny GEMMs).
        if active.count >= 2 * Compute.threads {
            let inputP = SendablePointer(batches.input.data), outP = SendablePointer(outputs.data)
            let offsets = batches.offsets
            Compute.parallelChunks(active.count) { items in
                for item in items {
                    let expert = active[item]
                    let first = offsets[expert], n = offsets[expert + 1] - first
                    guard let gate = Compute.threadScratch(1, n * f * activation.firstProjectionWidth),
                        let up = Compute.threadScratch(2, n * f)
                    else {
                        fatalError("out of memory for expert scratch (\(n) rows)")
                    }
                    computeExpert(
                        expert, inputP.pointer + first * d, rows: n, gate: gate, up: up,
                        into: outP.pointer + first * d, serial: true)
                }
            }
            return outputs
        }
        let maxBucket = active.map { batches.rows(of: $0).count }.max() ?? 0
        let gate = Tensor(shape: [maxBucket, f * activation.firstProjectionWidth]), up = Tensor(shape: [maxBucket, f])
        for expert in active {
            let rows = batches.rows(of: expert)
            computeExpert(
                expert, batches.input.row(rows.lowerBound), rows: rows.count, gate: gate.data, up: up.data,
                into: outputs.row(rows.lowerBound), serial: false)
        }
        return outputs
    }

    /// One expert on `rows` contiguous input rows; `gate` is `[rows, F·firstProjectionWidth]` and `up` `[rows, F]`
    /// scratch. `serial`: the caller
    /// already runs experts in parallel, so each GEMM stays on this thread.
    private func computeExpert(
        _ expert: Int, _ input: UnsafeMutablePointer<Float>, rows n: Int,
        gate: UnsafeMutablePointer<Float>, up: UnsafeMutablePointer<Float>,
        into output: UnsafeMutablePointer<Float>, serial: Bool
    ) {
        let d = dim, f = expertHiddenDim
        let backend = backend
        func linear(_ x: UnsafeMutablePointer<Float>, k: Int, _ w: Weight, columns: Int, _ y: UnsafeMutablePointer<Float>) {
            if serial {
                backend.linearSerial(x, rows: n, lda: k, weight: w, into: y, ldy: columns)
            } else {
                backend.linear(x, rows: n, weight: w, into: y, accumulate: false)
            }
        }
        switch activation {
        case .swiGLU:
            linear(input, k: d, experts.w1.matrix(expert), columns: f, gate)
            linear(input, k: d, experts.w3!.matrix(expert), columns: f, up)
            backend.siluMul(gate, up, count: n * f)
            linear(gate, k: f, experts.w2.matrix(expert), columns: d, output)
        case .clampedSwiGLU(let alpha, let limit):
            linear(input, k: d, experts.w1.matrix(expert), columns: 2 * f, gate)
            experts.b1!.withUnsafeBufferPointer { backend.addBias($0.baseAddress! + expert * 2 * f, to: gate, rows: n, width: 2 * f) }
            backend.clampedSwiGLU(gate, rows: n, hidden: f, alpha: alpha, limit: limit, into: up)
            linear(up, k: f, experts.w2.matrix(expert), columns: d, output)
            experts.b2!.withUnsafeBufferPointer { backend.addBias($0.baseAddress! + expert * d, to: output, rows: n, width: d) }
        }
    }

    // MARK: - Combine

    /// `hidden += shared(x) + Σ_k w_k·expert_k(x)` (without the weights when they were applied before the
    /// experts). Slots are summed in slot order so the result does not depend on how experts were bucketed.
    func combine(_ x: Tensor, _ routing: Routing, _ batches: ExpertBatches, _ outputs: Tensor, addInto hidden: Tensor) {
        let d = dim, k = routing.topK
        let moeOut = Tensor(shape: [routing.tokens, d])
        shared?.apply(x, into: moeOut, backend: backend)
        var rowOfAssignment = [Int](repeating: 0, count: batches.assignment.count)
        for (row, a) in batches.assignment.enumerated() { rowOfAssignment[a] = row }
        let scoreBefore = router.scoreBeforeExperts
        let outP = SendablePointer(moeOut.data), expP = SendablePointer(outputs.data)
        let wP = SendablePointer(routing.weights), hP = SendablePointer(hidden.data)
        rowOfAssignment.withUnsafeBufferPointer { rowsOf in
            let rowP = SendableConstPointer(rowsOf.baseAddress!)
            Compute.parallelRanges(routing.tokens) { _, range in
                let routed = UnsafeMutablePointer<Float>.allocate(capacity: d)
                defer { routed.deallocate() }
                for t in range {
                    let out = outP.pointer + t * d
                    routed.update(repeating: 0, count: d)
                    for slot in 0..<k {
                        let y = expP.pointer + rowP.pointer[t * k + slot] * d
                        let w: Float = scoreBefore ? 1 : wP.pointer[t * k + slot]
                        for c in 0..<d { routed[c] += w * y[c] }
                    }
                    let h = hP.pointer + t * d
                    for c in 0..<d { h[c] += out[c] + routed[c] }
                }
            }
        }
    }
}

/// Per-token routing of one MoE layer: selected experts, their combine weights, and the scores behind them.
final class Routing {
    let tokens: Int, topK: Int, experts: Int
    let gateLogits: Tensor // [T, E], after the gate bias
    let scores: Tensor // [T, E], before the expert bias
    let selected: UnsafeMutablePointer<Int32> // [T, K]
    let weights: UnsafeMutablePointer<Float> // [T, K]

    init(tokens: Int, topK: Int, experts: Int) {
        self.tokens = tokens; self.topK = topK; self.experts = experts
        gateLogits = Tensor(shape: [tokens, experts])
        scores = Tensor(shape: [tokens, experts])
        selected = .allocate(capacity: max(tokens * topK, 1))
        weights = .allocate(capacity: max(tokens * topK, 1))
    }
    deinit { selected.deallocate(); weights.deallocate() }

    func withDecision(layer: Int, expertBias: [Float]?, _ body: (RoutingDecision) -> Void) {
        func decide(_ bias: UnsafeBufferPointer<Float>?) {
            body(
                RoutingDecision(
                    layer: layer, tokenCount: self.tokens, topK: self.topK, numExperts: self.experts,
                    experts: .init(start: self.selected, count: self.tokens * self.topK),
                    weights: .init(start: self.weights, count: self.tokens * self.topK),
                    scores: .init(start: self.scores.data, count: self.scores.count),
                    gateLogits: .init(start: self.gateLogits.data, count: self.gateLogits.count),
                    expertBias: bias))
        }
        if let expertBias { expertBias.withUnsafeBufferPointer { decide($0) } } else { decide(nil) }
    }
}

/// The (token, slot) assignments of one MoE layer grouped by expert: rows `offsets[e]..<offsets[e+1]` of
/// `input` go to expert `e`. This is the unit that crosses process boundaries under expert parallelism.
final class ExpertBatches {
    let experts: Int, width: Int
    /// `experts + 1` row offsets into `input`, one bucket per expert.
    let offsets: [Int]
    /// For each bucketed row, the assignment `token·K + slot` it came from.
    let assignment: [Int]
    /// Gathered token rows `[assignments, D]`, pre-scaled by the routing weight when the model scores before the experts.
    let input: Tensor

    init(experts: Int, width: Int, offsets: [Int], assignment: [Int], input: Tensor) {
        self.experts = experts; self.width = width
        self.offsets = offsets; self.assignment = assignment; self.input = input
    }

    func rows(of expert: Int) -> Range<Int> { offsets[expert]..<offsets[expert + 1] }
}
