import ArgumentParser
import Foundation
import MoEDistributed
import MoEEval
import MoEModels

/// `--ep`: expert parallelism over the processes `mpirun` started (docs/DISTRIBUTED.md).
struct DistributedOptions: ParsableArguments {
    @Option(name: .customLong("ep"),
            help: ArgumentHelp("Expert-parallel degree; must equal the number of MPI processes (default: that number).",
                               discussion: "mpirun -np N moe-eval … places experts r·E/N ..< (r+1)·E/N on rank r, as TorchTitan's expert parallelism does; needs a build with --traits MPI."))
    var ep: Int?

    func validate() throws {
        if let ep, ep < 1 { throw ValidationError("--ep must be ≥ 1") }
    }
}

/// One command's view of the processes it runs on: which rank writes, how errors end the job, and the
/// per-rank report.
final class DistributedRun {
    let session: DistributedSession
    private(set) var group: ExpertParallelGroup?
    var isRoot: Bool { session.isRoot }
    var size: Int { session.size }
    var rank: Int { session.rank }
    private var memoryBeforeLoad: ResidentMemory.Reading?
    private var memoryAfterLoad: ResidentMemory.Reading?
    private var phases: [(name: String, statistics: ExpertParallelGroup.Statistics)] = []

    private init(session: DistributedSession) { self.session = session }

    /// Runs `body` as the command; on any rank's error the message names the rank and every process stops.
    static func run(_ body: (DistributedRun) throws -> Void) throws {
        let session: DistributedSession
        do {
            session = try DistributedSession.start()
        } catch {
            printError("error: \(String(describing: error))")
            throw ExitCode(1)
        }
        let run = DistributedRun(session: session)
        do {
            try body(run)
        } catch let error as ExitCode {
            if error.rawValue != 0 && session.size > 1 { session.fail("stopping the job") }
            session.finish()
            throw error
        } catch let error as ValidationError {
            if session.size > 1 { session.fail("error: \(error.message)") }
            session.finish()
            throw error
        } catch {
            if session.size > 1 { session.fail("error: \(String(describing: error))") }
            session.finish()
            printError("error: \(String(describing: error))")
            throw ExitCode(1)
        }
        session.finish()
    }

    /// The group for this run (nil for one process), refused before loading when the experts do not divide.
    func makeGroup(options: DistributedOptions, spec: ModelSpec, configDegree: Int?) throws -> ExpertParallelGroup? {
        guard size > 1 || options.ep.map({ $0 > 1 }) == true else { return nil }
        let numExperts = try Qwen3Args.resolve(spec)?.args.moeArgs.numExperts
            ?? ModelLoader.resolveArgs(spec, source: nil).args.moeArgs.numExperts
        group = try session.expertParallelGroup(requestedDegree: options.ep, configDegree: configDegree, numExperts: numExperts)
        if let group, isRoot, let configDegree, configDegree > 1, configDegree != group.degree {
            printError("note: the config trained with expert_parallel_degree \(configDegree); evaluating with degree \(group.degree) over \(group.size) processes (the degree must divide the process count)")
        }
        return group
    }

    /// Loads the model (this rank's experts only under expert parallelism), noting resident memory around it.
    func load(_ spec: ModelSpec) throws -> LoadedModel {
        memoryBeforeLoad = ResidentMemory.read()
        let loaded = try ModelLoader.load(spec, expertParallel: group)
        memoryAfterLoad = ResidentMemory.read()
        return loaded
    }

    /// Closes a phase (e.g. routing) of the per-rank timings; the next phase starts from zero.
    func endPhase(_ name: String) {
        guard let group else { return }
        phases.append((name, group.statistics))
        group.resetStatistics()
    }

    /// Every rank's memory, timings and expert loads, gathered to all ranks (a collective: every rank calls it).
    /// Returns the JSON object for the results file and the lines rank 0 prints; nil for a single process.
    /// `predictedLoads` maps each MoE layer to its per-expert loads in the routing phase (from the routing
    /// statistics), from which the overload factor a contiguous placement predicts is computed.
    func report(model: DeepSeekV3, routingPhase: String?, predictedLoads: [Int: [Int]]?) throws -> (json: [String: Any], lines: [String])? {
        guard let group else { return nil }
        if group.statistics.forwards > 0 || phases.isEmpty { endPhase("rest") }
        let held = model.heldWeightBytes
        let moeLayers = (0..<model.args.nLayers).filter { model.args.isMoELayer($0) }
        var mine: [Double] = [
            Double(memoryBeforeLoad?.residentBytes ?? -1), Double(memoryAfterLoad?.residentBytes ?? -1),
            Double(ResidentMemory.read()?.peakResidentBytes ?? -1), Double(held.dense), Double(held.experts),
        ]
        for phase in phases {
            let s = phase.statistics
            mine += [s.forwardSeconds, s.allToAllSeconds, s.expertComputeSeconds, s.gatherSeconds, Double(s.tokensRun)]
            mine += moeLayers.map { Double(s.receivedAssignments[$0] ?? 0) }
        }
        let all = try group.communicator.allGather(mine)
        let stride = mine.count
        func value(_ rank: Int, _ index: Int) -> Double { all[rank * stride + index] }

        var ranks: [[String: Any]] = []
        var lines: [String] = []
        let mib = 1024.0 * 1024.0
        for r in 0..<size {
            let experts = group.experts(ofRank: r)
            var entry: [String: Any] = [
                "rank": r, "experts": [experts.lowerBound, experts.upperBound],
                "resident_bytes_before_load": Int(value(r, 0)), "resident_bytes_after_load": Int(value(r, 1)),
                "peak_resident_bytes": Int(value(r, 2)),
                "dense_weight_bytes": Int(value(r, 3)), "expert_weight_bytes": Int(value(r, 4)),
            ]
            var phaseEntries: [String: Any] = [:]
            for (p, phase) in phases.enumerated() {
                let base = 5 + p * (5 + moeLayers.count)
                phaseEntries[phase.name] = [
                    "forward_seconds": value(r, base), "all_to_all_seconds": value(r, base + 1),
                    "expert_compute_seconds": value(r, base + 2), "gather_seconds": value(r, base + 3),
                    "tokens_run": Int(value(r, base + 4)),
                    "assignments_computed_per_layer": Dictionary(uniqueKeysWithValues: moeLayers.enumerated().map {
                        (String($0.element), Int(value(r, base + 5 + $0.offset)))
                    }),
                ]
            }
            entry["phases"] = phaseEntries
            ranks.append(entry)
            let total = phases.indices.reduce((0.0, 0.0, 0.0)) { sum, p in
                let base = 5 + p * (5 + moeLayers.count)
                return (sum.0 + value(r, base), sum.1 + value(r, base + 1), sum.2 + value(r, base + 2))
            }
            lines.append(String(format: "rank %d: experts %d..<%d, weights %.2f MiB dense + %.2f MiB experts; resident %.1f MiB (+%.2f MiB loading the model), peak %.1f MiB; forward %.2f s = all-to-all %.2f s + expert compute %.2f s + rest",
                                r, experts.lowerBound, experts.upperBound, value(r, 3) / mib, value(r, 4) / mib,
                                value(r, 1) / mib, (value(r, 1) - value(r, 0)) / mib, value(r, 2) / mib,
                                total.0, total.1, total.2))
        }
        var json: [String: Any] = ["degree": group.degree, "replicas": group.replicas, "processes": size,
                                   "placement": "contiguous (TorchTitan)", "ranks": ranks]

        // The measured overload: max over ranks of the assignments each computed, against the mean, per layer
        // and summed over layers (Σ_ℓ max_r L / Σ_ℓ mean_r L), next to what the routing statistics predict.
        if let routingPhase, let p = phases.firstIndex(where: { $0.name == routingPhase }) {
            let base = 5 + p * (5 + moeLayers.count)
            var measured: [String: Any] = [:]
            var maxSum = 0.0, meanSum = 0.0, predictedMax = 0.0, predictedMean = 0.0
            for (i, layer) in moeLayers.enumerated() {
                // Per position in the expert group, summed over the data-parallel replicas: the load each expert
                // block carried, which is what the routing statistics' contiguous-placement prediction describes.
                let loads = (0..<group.degree).map { index in
                    Swift.stride(from: index, to: size, by: group.degree).reduce(0.0) { $0 + value($1, base + 5 + i) }
                }
                let mean = loads.reduce(0, +) / Double(group.degree), top = loads.max() ?? 0
                maxSum += top
                meanSum += mean
                var layerEntry: [String: Any] = ["measured": mean > 0 ? top / mean : 1, "rank_loads": loads.map { Int($0) }]
                if let predicted = predictedLoads?[layer].flatMap({ RoutingMetrics.expertParallelLoad($0, degree: group.degree) }) {
                    layerEntry["predicted"] = predicted.overloadFactor
                    predictedMax += Double(predicted.maxRankLoad)
                    predictedMean += predicted.meanRankLoad
                }
                measured[String(layer)] = layerEntry
            }
            let step = meanSum > 0 ? maxSum / meanSum : 1
            let predicted: Double? = predictedMean > 0 ? predictedMax / predictedMean : nil
            json["overload_factor"] = ["phase": routingPhase, "measured": step, "predicted": predicted as Any, "per_layer": measured]
            lines.append(String(format: "EP overload factor (%@): measured %.4f (busiest rank's assignments / mean, Σ over layers); predicted by the routing statistics %@",
                                routingPhase, step, predicted.map { String(format: "%.4f", $0) } ?? "n/a"))
        }
        return (json, lines)
    }
}
