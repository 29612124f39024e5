import Foundation
import MoEModels

/// One process's memory, weights and timings under expert parallelism, as every rank sends it to every other.
public struct RankStatistics: Equatable, Sendable {
    /// -1 where the platform gives no reading.
    public var residentBytesBeforeLoad: Int
    public var residentBytesAfterLoad: Int
    public var peakResidentBytes: Int
    public var denseWeightBytes: Int
    public var expertWeightBytes: Int
    /// In the order the phases ended.
    public var phases: [Phase]

    public struct Phase: Equatable, Sendable {
        public var forwardSeconds: Double
        public var allToAllSeconds: Double
        public var expertComputeSeconds: Double
        public var gatherSeconds: Double
        public var tokensRun: Int
        /// Assignments this rank's experts computed, one per MoE layer (in layer order).
        public var assignmentsPerMoELayer: [Int]

        public init(_ statistics: ExpertParallelGroup.Statistics, moeLayers: [Int]) {
            forwardSeconds = statistics.forwardSeconds
            allToAllSeconds = statistics.allToAllSeconds
            expertComputeSeconds = statistics.expertComputeSeconds
            gatherSeconds = statistics.gatherSeconds
            tokensRun = statistics.tokensRun
            assignmentsPerMoELayer = moeLayers.map { statistics.receivedAssignments[$0] ?? 0 }
        }

        init(
            forwardSeconds: Double, allToAllSeconds: Double, expertComputeSeconds: Double, gatherSeconds: Double,
            tokensRun: Int, assignmentsPerMoELayer: [Int]
        ) {
            self.forwardSeconds = forwardSeconds; self.allToAllSeconds = allToAllSeconds
            self.expertComputeSeconds = expertComputeSeconds; self.gatherSeconds = gatherSeconds
            self.tokensRun = tokensRun; self.assignmentsPerMoELayer = assignmentsPerMoELayer
        }
    }

    public init(
        residentBytesBeforeLoad: Int, residentBytesAfterLoad: Int, peakResidentBytes: Int,
        denseWeightBytes: Int, expertWeightBytes: Int, phases: [Phase]
    ) {
        self.residentBytesBeforeLoad = residentBytesBeforeLoad; self.residentBytesAfterLoad = residentBytesAfterLoad
        self.peakResidentBytes = peakResidentBytes; self.denseWeightBytes = denseWeightBytes
        self.expertWeightBytes = expertWeightBytes; self.phases = phases
    }

    // The collective moves Doubles: this layout is written and read only here. Byte counts and token
    // counts stay exact as Doubles below 2^53.
    static let fixedValues = 5
    static let valuesPerPhaseBeforeLayers = 5

    static func valueCount(phases: Int, moeLayers: Int) -> Int {
        fixedValues + phases * (valuesPerPhaseBeforeLayers + moeLayers)
    }

    func encoded() -> [Double] {
        var values = [
            Double(residentBytesBeforeLoad), Double(residentBytesAfterLoad), Double(peakResidentBytes),
            Double(denseWeightBytes), Double(expertWeightBytes),
        ]
        for phase in phases {
            values += [
                phase.forwardSeconds, phase.allToAllSeconds, phase.expertComputeSeconds, phase.gatherSeconds,
                Double(phase.tokensRun),
            ]
            values += phase.assignmentsPerMoELayer.map(Double.init)
        }
        return values
    }

    static func decoded(_ values: ArraySlice<Double>, phases: Int, moeLayers: Int) -> RankStatistics {
        let v = Array(values)
        var decodedPhases: [Phase] = []
        for p in 0..<phases {
            let base = fixedValues + p * (valuesPerPhaseBeforeLayers + moeLayers)
            decodedPhases.append(
                Phase(
                    forwardSeconds: v[base], allToAllSeconds: v[base + 1], expertComputeSeconds: v[base + 2],
                    gatherSeconds: v[base + 3], tokensRun: Int(v[base + 4]),
                    assignmentsPerMoELayer: (0..<moeLayers).map { Int(v[base + 5 + $0]) }))
        }
        return RankStatistics(
            residentBytesBeforeLoad: Int(v[0]), residentBytesAfterLoad: Int(v[1]), peakResidentBytes: Int(v[2]),
            denseWeightBytes: Int(v[3]), expertWeightBytes: Int(v[4]), phases: decodedPhases)
    }

    /// Every rank's statistics, on every rank (a collective: every rank calls it with the same phase count).
    public static func gather(
        _ mine: RankStatistics, moeLayers: Int,
        over communicator: any ExpertParallelCommunicator
    ) throws -> [RankStatistics] {
        let values = mine.encoded()
        let stride = valueCount(phases: mine.phases.count, moeLayers: moeLayers)
        precondition(values.count == stride, "a phase's assignments do not cover every MoE layer")
        let all = try communicator.allGather(values)
        guard all.count == stride * communicator.size else {
            throw ExpertParallelError(
                "per-rank statistics: received \(all.count) values from \(communicator.size) ranks, expected \(stride) each")
        }
        return (0..<communicator.size).map {
            decoded(all[($0 * stride)..<(($0 + 1) * stride)], phases: mine.phases.count, moeLayers: moeLayers)
        }
    }
}

/// `moe_eval.expert_parallel`: every rank's memory, timings and expert loads, and the overload factor.
public struct ExpertParallelReport: Encodable {
    public var degree: Int
    public var replicas: Int
    public var processes: Int
    public var placement = "contiguous (TorchTitan)"
    public var ranks: [Rank]
    public var overloadFactor: OverloadFactor?
    /// What rank 0 prints, one line per rank and one for the overload factor.
    public var lines: [String] = []

    public struct Rank: Encodable {
        public var rank: Int
        public var experts: [Int]
        public var statistics: RankStatistics
        public var phaseNames: [String]
        public var moeLayers: [Int]

        enum CodingKeys: String, CodingKey {
            case rank, experts, residentBefore = "resident_bytes_before_load", residentAfter = "resident_bytes_after_load"
            case peak = "peak_resident_bytes", dense = "dense_weight_bytes", expertBytes = "expert_weight_bytes", phases
        }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(rank, forKey: .rank)
            try container.encode(experts, forKey: .experts)
            try container.encode(statistics.residentBytesBeforeLoad, forKey: .residentBefore)
            try container.encode(statistics.residentBytesAfterLoad, forKey: .residentAfter)
            try container.encode(statistics.peakResidentBytes, forKey: .peak)
            try container.encode(statistics.denseWeightBytes, forKey: .dense)
            try container.encode(statistics.expertWeightBytes, forKey: .expertBytes)
            var phases = container.nestedContainer(keyedBy: SectionKey.self, forKey: .phases)
            for (name, phase) in zip(phaseNames, statistics.phases) {
                try phases.encode(PhaseRecord(phase: phase, moeLayers: moeLayers), forKey: SectionKey(name))
            }
        }
    }

    struct PhaseRecord: Encodable {
        let phase: RankStatistics.Phase
        let moeLayers: [Int]
        enum CodingKeys: String, CodingKey {
            case forward = "forward_seconds", allToAll = "all_to_all_seconds", compute = "expert_compute_seconds"
            case gather = "gather_seconds", tokens = "tokens_run", assignments = "assignments_computed_per_layer"
        }
        func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(phase.forwardSeconds, forKey: .forward)
            try container.encode(phase.allToAllSeconds, forKey: .allToAll)
            try container.encode(phase.expertComputeSeconds, forKey: .compute)
            try container.encode(phase.gatherSeconds, forKey: .gather)
            try container.encode(phase.tokensRun, forKey: .tokens)
            try container.encode(
                Dictionary(uniqueKeysWithValues: zip(moeLayers.map(String.init), phase.assignmentsPerMoELayer)),
                forKey: .assignments)
        }
    }

    public struct OverloadFactor: Encodable {
        public var phase: String
        /// Σ over layers of the busiest rank's assignments ÷ Σ of the mean.
        public var measured: Double
        public var predicted: Double?
        public var perLayer: [String: Layer]

        public struct Layer: Encodable {
            public var measured: Double
            public var rankLoads: [Int]
            public var predicted: Double?
            enum CodingKeys: String, CodingKey { case measured, rankLoads = "rank_loads", predicted }
        }

        enum CodingKeys: String, CodingKey { case phase, measured, predicted, perLayer = "per_layer" }

        public func encode(to encoder: Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(phase, forKey: .phase)
            try container.encode(measured, forKey: .measured)
            if let predicted { try container.encode(predicted, forKey: .predicted) } else { try container.encodeNil(forKey: .predicted) }
            try container.encode(perLayer, forKey: .perLayer)
        }
    }

    enum CodingKeys: String, CodingKey {
        case degree, replicas, processes, placement, ranks, overloadFactor = "overload_factor"
    }

    public func encode(to encoder: Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(degree, forKey: .degree)
        try container.encode(replicas, forKey: .replicas)
        try container.encode(processes, forKey: .processes)
        try container.encode(placement, forKey: .placement)
        try container.encode(ranks, forKey: .ranks)
        try container.encodeIfPresent(overloadFactor, forKey: .overloadFactor)
    }

    /// The report from every rank's statistics. `predictedLoads` maps each MoE layer to its per-expert loads in
    /// `routingPhase` (from the routing statistics), from which the overload factor a contiguous placement
    /// predicts is computed.
    public init(
        group: ExpertParallelGroup, ranks all: [RankStatistics], phaseNames: [String], moeLayers: [Int],
        routingPhase: String?, predictedLoads: [Int: [Int]]?
    ) {
        degree = group.degree
        replicas = group.replicas
        processes = all.count
        let mib = 1024.0 * 1024.0
        ranks = all.enumerated().map { r, statistics in
            let experts = group.experts(ofRank: r)
            return Rank(
                rank: r, experts: [experts.lowerBound, experts.upperBound], statistics: statistics,
                phaseNames: phaseNames, moeLayers: moeLayers)
        }
        for (r, s) in all.enumerated() {
            let experts = group.experts(ofRank: r)
            let forward = s.phases.reduce(0) { $0 + $1.forwardSeconds }
            let allToAll = s.phases.reduce(0) { $0 + $1.allToAllSeconds }
            let compute = s.phases.reduce(0) { $0 + $1.expertComputeSeconds }
            lines.append(
                String(
                    format:
                        "rank %d: experts %d..<%d, weights %.2f MiB dense + %.2f MiB experts; resident %.1f MiB (+%.2f MiB loading the model), peak %.1f MiB; forward %.2f s = all-to-all %.2f s + expert compute %.2f s + rest",
                    r, experts.lowerBound, experts.upperBound, Double(s.denseWeightBytes) / mib, Double(s.expertWeightBytes) / mib,
                    Double(s.residentBytesAfterLoad) / mib, Double(s.residentBytesAfterLoad - s.residentBytesBeforeLoad) / mib,
                    Double(s.peakResidentBytes) / mib, forward, allToAll, compute))
        }

        // The measured overload: max over ranks of the assignments each computed, against the mean, per layer
        // and summed over layers (Σ_ℓ max_r L / Σ_ℓ mean_r L), next to what the routing statistics predict.
        guard let routingPhase, let p = phaseNames.firstIndex(of: routingPhase) else { return }
        var perLayer: [String: OverloadFactor.Layer] = [:]
        var maxSum = 0.0, meanSum = 0.0, predictedMax = 0.0, predictedMean = 0.0
        for (i, layer) in moeLayers.enumerated() {
            // Per position in the expert group, summed over the data-parallel replicas: the load each expert
            // block carried, which is what the routing statistics' contiguous-placement prediction describes.
            let loads = (0..<group.degree).map { index in
                stride(from: index, to: all.count, by: group.degree).reduce(0) { $0 + all[$1].phases[p].assignmentsPerMoELayer[i] }
            }
            let mean = Double(loads.reduce(0, +)) / Double(group.degree), top = Double(loads.max() ?? 0)
            maxSum += top
            meanSum += mean
            var entry = OverloadFactor.Layer(measured: mean > 0 ? top / mean : 1, rankLoads: loads, predicted: nil)
            if let predicted = predictedLoads?[layer].flatMap({ RoutingMetrics.expertParallelLoad($0, degree: group.degree) }) {
                entry.predicted = predicted.overloadFactor
                predictedMax += Double(predicted.maxRankLoad)
                predictedMean += predicted.meanRankLoad
            }
            perLayer[String(layer)] = entry
        }
        let measured = meanSum > 0 ? maxSum / meanSum : 1
        let predicted: Double? = predictedMean > 0 ? predictedMax / predictedMean : nil
        overloadFactor = OverloadFactor(phase: routingPhase, measured: measured, predicted: predicted, perLayer: perLayer)
        lines.append(
            String(
                format:
                    "EP overload factor (%@): measured %.4f (busiest rank's assignments / mean, Σ over layers); predicted by the routing statistics %@",
                routingPhase, measured, predicted.map { String(format: "%.4f", $0) } ?? "n/a"))
    }
}
