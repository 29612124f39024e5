import Foundation
import MoEModels

/// One row of a forward: the request (index in the scorer's current call) it scores and how many of its
/// leading positions are real tokens (the rest is padding).
public struct ForwardRow: Sendable, Equatable {
    public var request: Int
    public var tokens: Int
    public init(request: Int, tokens: Int) { self.request = request; self.tokens = tokens }
}

/// A routing observer that is told, before each scoring forward, which request each row belongs to.
public protocol RequestRoutingObserver: RoutingObserver {
    func beginForward(rows: [ForwardRow], seqLen: Int)
}

/// Per-expert top-k loads per benchmark task, from the scorer's own forwards (padding excluded).
public final class TaskRoutingCollector: RequestRoutingObserver {
    private var requestLabels: [String] = []
    private var otherwise: String?
    private var rows: [ForwardRow] = []
    private var seqLen = 0
    /// label → layer → loads; label → tokens routed (counted at the first MoE layer seen).
    private var loads: [String: [Int: [Int]]] = [:]
    private var tokens: [String: Int] = [:]
    private var firstLayer: Int?
    private var order: [String] = []
    public private(set) var warnings: [String] = []

    public init() {}

    /// The task of each request index of the scorer's next calls; indices past the end belong to `otherwise`
    /// (rolling windows, whose count is known only to the scorer).
    public func label(requests: [String], otherwise: String? = nil) {
        requestLabels = requests
        self.otherwise = otherwise
    }

    public func beginForward(rows: [ForwardRow], seqLen: Int) {
        self.rows = rows
        self.seqLen = seqLen
    }

    public func observe(_ decision: RoutingDecision) {
        let e = decision.numExperts, k = decision.topK, t = decision.tokenCount
        guard e > 0, k > 0, seqLen > 0, t == rows.count * seqLen, decision.experts.count >= t * k else {
            if !rows.isEmpty {
                warnings.append("task routing layer \(decision.layer): \(t) tokens do not match \(rows.count) rows × \(seqLen); skipped")
            }
            return
        }
        if firstLayer == nil { firstLayer = decision.layer }
        for (r, row) in rows.enumerated() {
            let label = row.request < requestLabels.count ? requestLabels[row.request] : otherwise
            guard let label else { continue }
            if loads[label] == nil { order.append(label); loads[label] = [:] }
            var counts = loads[label]![decision.layer] ?? Array(repeating: 0, count: e)
            guard counts.count == e else { continue }
            for position in 0..<min(row.tokens, seqLen) {
                let base = (r * seqLen + position) * k
                for slot in 0..<k {
                    let id = Int(decision.experts[base + slot])
                    if id >= 0 && id < e { counts[id] += 1 }
                }
            }
            loads[label]![decision.layer] = counts
            if decision.layer == firstLayer { tokens[label, default: 0] += min(row.tokens, seqLen) }
        }
    }

    /// Loads per task in the order the tasks were first seen.
    public func finish() -> [TaskRouting.Source] {
        order.map { TaskRouting.Source(label: $0, tokens: tokens[$0] ?? 0, loads: loads[$0] ?? [:]) }
    }
}

/// The `task_routing` section: which experts each benchmark task (and the routing text) uses, and how
/// different the tasks' expert distributions are (docs/METRICS.md, "Per-task routing").
public struct TaskRouting: Codable, Equatable, Sendable {
    /// Raw loads of one task or text source.
    public struct Source: Equatable, Sendable {
        public var label: String
        public var tokens: Int
        public var loads: [Int: [Int]]
        public init(label: String, tokens: Int, loads: [Int: [Int]]) {
            self.label = label; self.tokens = tokens; self.loads = loads
        }
    }

    public struct SpecialisedExpert: Codable, Equatable, Sendable {
        public var layer: Int
        public var expert: Int
        /// Share of the task's top-k assignments in that layer going to the expert, and the same over all sources.
        public var share: Double
        public var overallShare: Double
        enum CodingKeys: String, CodingKey {
            case layer, expert, share
            case overallShare = "overall_share"
        }
    }

    public struct Task: Codable, Equatable, Sendable {
        public var label: String
        public var tokens: Int
        /// `layer_<i>` → top-k assignments per expert.
        public var tokensPerExpert: [String: [Int]]
        /// `layer_<i>` → KL(load distribution ‖ uniform) in nats, and its mean over layers.
        public var klToUniform: [String: Double]
        public var meanKLToUniform: Double
        /// The experts whose share in this task most exceeds their share over all sources.
        public var mostSpecialisedExperts: [SpecialisedExpert]
        enum CodingKeys: String, CodingKey {
            case label, tokens
            case tokensPerExpert = "tokens_per_expert"
            case klToUniform = "kl_to_uniform"
            case meanKLToUniform = "mean_kl_to_uniform"
            case mostSpecialisedExperts = "most_specialised_experts"
        }
    }

    public struct Divergence: Codable, Equatable, Sendable {
        public var a: String
        public var b: String
        /// Jensen–Shannon divergence of the two load distributions (bits), per layer and the mean over layers.
        public var jensenShannon: [String: Double]
        public var meanJensenShannon: Double
        enum CodingKeys: String, CodingKey {
            case a, b
            case jensenShannon = "jensen_shannon"
            case meanJensenShannon = "mean_jensen_shannon"
        }
    }

    public var tasks: [Task]
    public var divergences: [Divergence]

    public static let specialisedExpertsPerTask = 3

    public init(tasks: [Task], divergences: [Divergence]) {
        self.tasks = tasks
        self.divergences = divergences
    }

    /// Sources without routed tokens are left out.
    public init(_ sources: [Source]) {
        let kept = sources.filter { $0.tokens > 0 && !$0.loads.isEmpty }
        var pooled: [Int: [Int]] = [:]
        for source in kept {
            for (layer, counts) in source.loads {
                var sum = pooled[layer] ?? Array(repeating: 0, count: counts.count)
                guard sum.count == counts.count else { continue }
                for i in counts.indices { sum[i] += counts[i] }
                pooled[layer] = sum
            }
        }
        let overall = pooled.mapValues(RoutingMetrics.distribution)
        tasks = kept.map { source in
            var kl: [String: Double] = [:]
            var candidates: [SpecialisedExpert] = []
            for layer in source.loads.keys.sorted() {
                let p = RoutingMetrics.distribution(source.loads[layer]!)
                kl[RoutingStatistics.key(forLayer: layer)] = RoutingMetrics.klToUniform(p)
                guard let q = overall[layer], q.count == p.count else { continue }
                for i in p.indices where p[i] > q[i] {
                    candidates.append(SpecialisedExpert(layer: layer, expert: i, share: p[i], overallShare: q[i]))
                }
            }
            candidates.sort { ($0.share - $0.overallShare, -$0.layer, -$0.expert) > ($1.share - $1.overallShare, -$1.layer, -$1.expert) }
            return Task(
                label: source.label, tokens: source.tokens,
                tokensPerExpert: Dictionary(uniqueKeysWithValues: source.loads.map { (RoutingStatistics.key(forLayer: $0.key), $0.value) }),
                klToUniform: kl, meanKLToUniform: kl.isEmpty ? 0 : kl.values.reduce(0, +) / Double(kl.count),
                mostSpecialisedExperts: Array(candidates.prefix(Self.specialisedExpertsPerTask)))
        }
        var divergences: [Divergence] = []
        for i in kept.indices {
            for j in kept.indices where j > i {
                var perLayer: [String: Double] = [:]
                for layer in Set(kept[i].loads.keys).intersection(kept[j].loads.keys).sorted() {
                    let p = RoutingMetrics.distribution(kept[i].loads[layer]!), q = RoutingMetrics.distribution(kept[j].loads[layer]!)
                    guard p.count == q.count else { continue }
                    perLayer[RoutingStatistics.key(forLayer: layer)] = RoutingMetrics.jensenShannonDivergence(p, q)
                }
                guard !perLayer.isEmpty else { continue }
                divergences.append(
                    Divergence(
                        a: kept[i].label, b: kept[j].label, jensenShannon: perLayer,
                        meanJensenShannon: perLayer.values.reduce(0, +) / Double(perLayer.count)))
            }
        }
        self.divergences = divergences
    }
}
