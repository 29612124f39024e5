import Foundation
import MoECore
import MoEDistributed
import MoEModels

/// The processes one evaluation runs on (one, or those `mpirun` started): which rank writes, the expert-parallel
/// group, resident memory around the load, and the per-phase timings the per-rank report gathers.
public final class EvaluationProcesses {
    public let session: DistributedSession
    public private(set) var group: ExpertParallelGroup?
    public var isRoot: Bool { session.isRoot }
    public var size: Int { session.size }
    public var rank: Int { session.rank }
    private var memoryBeforeLoad: ProcessMemory.Reading?
    private var memoryAfterLoad: ProcessMemory.Reading?
    private var phases: [(name: String, statistics: ExpertParallelGroup.Statistics)] = []

    public init(session: DistributedSession) { self.session = session }

    /// The processes `mpirun` started, or this one alone.
    public static func start() throws -> EvaluationProcesses { EvaluationProcesses(session: try DistributedSession.start()) }

    /// The group for this run (nil for one process), refused before loading when the experts do not divide.
    /// `note` receives, on rank 0, why the degree differs from the config's.
    public func makeGroup(
        requestedDegree: Int?, spec: ModelSpec, configDegree: Int?,
        note: (String) -> Void
    ) throws -> ExpertParallelGroup? {
        guard size > 1 || requestedDegree.map({ $0 > 1 }) == true else { return nil }
        let numExperts = try ModelLoader.numExperts(spec)
        group = try session.expertParallelGroup(requestedDegree: requestedDegree, configDegree: configDegree, numExperts: numExperts)
        if let group, isRoot, let configDegree, configDegree > 1, configDegree != group.degree {
            note(
                "the config trained with expert_parallel_degree \(configDegree); evaluating with degree \(group.degree) over \(group.size) processes (the degree must divide the process count)"
            )
        }
        return group
    }

    /// Loads the model (this rank's experts only under expert parallelism), noting resident memory around it.
    public func load(_ spec: ModelSpec) throws -> LoadedModel {
        memoryBeforeLoad = ProcessMemory.read()
        let loaded = try ModelLoader.load(spec, expertParallel: group)
        memoryAfterLoad = ProcessMemory.read()
        return loaded
    }

    /// Closes a phase (e.g. routing) of the per-rank timings; the next phase starts from zero.
    public func endPhase(_ name: String) {
        guard let group else { return }
        phases.append((name, group.statistics))
        group.resetStatistics()
    }

    /// Every rank's memory, timings and expert loads, gathered to all ranks (a collective: every rank calls it);
    /// nil for a single process. `predictedLoads`: per MoE layer, the per-expert loads the routing statistics
    /// counted in `routingPhase`.
    public func report(model: any CausalLanguageModel, routingPhase: String?, predictedLoads: [Int: [Int]]?) throws -> ExpertParallelReport?
    {
        guard let group else { return nil }
        if group.statistics.forwards > 0 || phases.isEmpty { endPhase("rest") }
        let held = (dense: model.footprint.heldDenseBytes, experts: model.footprint.heldExpertBytes)
        let moeLayers = model.shape.moeLayers
        let mine = RankStatistics(
            residentBytesBeforeLoad: memoryBeforeLoad?.residentBytes ?? -1, residentBytesAfterLoad: memoryAfterLoad?.residentBytes ?? -1,
            peakResidentBytes: ProcessMemory.read()?.peakResidentBytes ?? -1,
            denseWeightBytes: held.dense, expertWeightBytes: held.experts,
            phases: phases.map { RankStatistics.Phase($0.statistics, moeLayers: moeLayers) })
        let all = try RankStatistics.gather(mine, moeLayers: moeLayers.count, over: group.communicator)
        return ExpertParallelReport(
            group: group, ranks: all, phaseNames: phases.map(\.name), moeLayers: moeLayers,
            routingPhase: routingPhase, predictedLoads: predictedLoads)
    }
}
