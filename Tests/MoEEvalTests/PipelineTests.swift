import Foundation
import MoEJSON
import Testing

@testable import MoEEval
@testable import MoEModels

/// The evaluation pipeline as a library: its typed records written to a results file that `compare` and
/// `report` read back, and the per-rank statistics' one encoding for the collective.
@Suite struct PipelineTests {
    final class SilentProgress: EvaluationProgress {
        var notes: [String] = []
        func update(_ message: String) {}
        func done(_ message: String) {}
        func note(_ message: String) { notes.append(message) }
    }

    static func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-pipeline-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    /// The demo model, evaluated by the library as `moe-eval run --preset 30s --routing-input random` does.
    @Test func demoRunWritesTheResultsFileItReturns() throws {
        let out = try Self.scratch()
        defer { try? FileManager.default.removeItem(at: out) }
        let inputs = try ModelInputs.resolve(ModelSpec(checkpoint: URL(fileURLWithPath: ".")), checkpointGiven: false, tokenizer: nil)
        #expect(inputs.demo != nil && inputs.config != nil)
        var options = EvaluationOptions(preset: try #require(Preset.named("30s")))
        options.routingInput = .random
        options.outputDir = out.path
        let (results, written) = try EvaluationPipeline(
            inputs: inputs, options: options, processes: try EvaluationProcesses.start(),
            progress: SilentProgress()
        ).run()
        let file = try #require(written)
        #expect(file.deletingLastPathComponent().standardizedFileURL.path == out.standardizedFileURL.path)
        #expect(results.outputFile == file.path)

        let read = try ResultsFile.load(file)
        // The seed's keys, moe-eval's own section, and the routed ids agreement between checkpoints reads.
        #expect(Set(read.root.keys) == Set(EvaluationResults.seedKeys + ["moe_eval", "routed_experts"]))
        #expect(read.preset == "30s")
        #expect(read.runRecord?["routing_input"]?["kind"]?.stringValue == "random")
        #expect(read.runRecord?["lm_eval"]?["status"]?.stringValue == "skipped")
        #expect(read.runRecord?["lm_eval"]?["reason"]?.stringValue == "preset 30s runs no tasks")
        #expect(read.runRecord?["tool"]?.stringValue == "moe-eval")
        #expect(read.runRecord?["phase_seconds"]?["load"]?.doubleValue == results.run.loadSeconds)
        // Every routing number the library computed is the one in the file.
        let routing = try JSONValue.parse(Array(ResultsJSON.encode(try #require(results.routingStats))), allowNonFinite: true)
        #expect(read.root["routing_stats"] == routing)
        #expect(read.routingLayers.count == results.routingStats?.layers.count)
        // Steps that did not run are written as the seed writes them.
        let inference = try #require(read.root["inference_performance"]?.objectValue)
        #expect(Set(inference.keys) == ["latency_ms", "throughput_tokens_per_sec", "memory_allocated_gb", "memory_reserved_gb"])
        #expect(inference.entries.allSatisfy { $0.value.isNull })
        #expect(read.root["computational_cost"]?["gpu_peak_flops"]?.isNull == true)
        #expect(read.root["computational_cost"]?["num_flops_per_token"]?.intValue == results.cost?.numFlopsPerToken)
        #expect(read.root["config"]?.objectValue?.isEmpty == false)
        #expect(read.root["model_args"]?["dim"]?.intValue == (results.modelArgs as? ModelArgs)?.dim)
    }

    /// Records with every optional part set (and non-finite numbers) survive the file.
    @Test func recordsRoundTripThroughTheFile() throws {
        let args = ModelArgs()
        var record = RunRecord(
            preset: "1min", seed: 7, threads: 2, modelArgsOrigin: "test", loadSeconds: 0.25,
            numerics: .init(yarn: true, finalNormEps: 1e-6, origin: "test"), keyNaming: "v0_3", lmEval: .skipped(""))
        record.lmEval = LMEvalRecord(status: .ranWithErrors, tasks: ["hellaswag", "arc_easy"])
        record.lmEval.run = .init(
            limit: nil, numFewshot: ["hellaswag": 0], maxLength: 64, dataDir: nil, requests: 12,
            scoringSeconds: 0.5, tokenization: "as lm-eval's API backends (no BOS)")
        record.routingWarnings = ["layer 1: a warning"]
        record.extraSections["task_routing"] = ["hellaswag": [1, 2]]
        var results = EvaluationResults(
            checkpointDir: "/ckpt", modelArgs: args, timestamp: "20260101_000000",
            outputFile: "/out/eval_results.json", run: record)
        results.lmEvalResults = ["hellaswag": ["acc,none": 0.5, "acc_stderr,none": .nan]]
        results.lmEvalErrors = ["arc_easy": "no data"]
        results.lmEvalSamples = [
            "hellaswag": [
                NativeTasks.Sample(
                    docId: 0, target: "1", loglikelihoods: [-1.5, -.infinity],
                    isGreedy: [true, false], correct: 1, acc: 1, accNorm: 0)
            ]
        ]

        let read = try ResultsFile.parse(try results.jsonData(), path: "memory")
        let run = try #require(read.runRecord)
        #expect(run["lm_eval"]?["status"]?.stringValue == "ran with errors")
        #expect(run["lm_eval"]?["limit"]?.isNull == true)
        #expect(run["lm_eval"]?["data_dir"]?.isNull == true)
        #expect(run["lm_eval"]?["num_fewshot"]?["hellaswag"]?.intValue == 0)
        #expect(run["task_routing"]?["hellaswag"] == .array([.int(1), .int(2)]))
        #expect(run["routing_warnings"]?.arrayValue?.count == 1)
        #expect(run["numerics"]?["final_norm_eps"]?.doubleValue == 1e-6)
        #expect(read.root["lm_eval_results"]?["hellaswag"]?["acc,none"]?.doubleValue == 0.5)
        #expect(read.root["lm_eval_results"]?["hellaswag"]?["acc_stderr,none"]?.stringValue == "nan")
        #expect(read.root["lm_eval_errors"]?["arc_easy"]?.stringValue == "no data")
        let sample = try #require(read.root["lm_eval_samples"]?["hellaswag"]?.arrayValue?.first)
        #expect(sample["loglikelihoods"] == .array([.double(-1.5), .string("-inf")]))
        #expect(sample["doc_id"]?.intValue == 0)
        #expect(read.root["routing_stats"]?.objectValue?.isEmpty == true)
        #expect(read.root["computational_cost"]?.objectValue?.isEmpty == true)
        #expect(read.root["model_args"]?["dim"]?.intValue == args.dim)
        #expect(read.walltimeSeconds == 0 && read.checkpointDir == "/ckpt" && read.timestamp == "20260101_000000")
    }

    /// Two ranks' statistics through the collective's layout and back, and the overload factor from them.
    @Test func perRankStatisticsGatherAndReport() throws {
        func rank(_ r: Int, loads: [Int]) -> RankStatistics {
            var statistics = ExpertParallelGroup.Statistics()
            statistics.forwardSeconds = 1.5 + Double(r)
            statistics.allToAllSeconds = 0.25
            statistics.expertComputeSeconds = 0.5
            statistics.tokensRun = 100 + r
            statistics.receivedAssignments = [1: loads[0], 3: loads[1]]
            return RankStatistics(
                residentBytesBeforeLoad: 1 << 20, residentBytesAfterLoad: 3 << 20, peakResidentBytes: (4 << 20) + r,
                denseWeightBytes: 1000, expertWeightBytes: 2000 + r,
                phases: [.init(statistics, moeLayers: [1, 3])])
        }
        let ranks = [rank(0, loads: [30, 10]), rank(1, loads: [10, 10])]
        let communicators = FakeCommunicator.pair(sending: ranks.map { $0 })
        let gathered = try RankStatistics.gather(ranks[1], moeLayers: 2, over: communicators[1])
        #expect(gathered == ranks)

        let group = try ExpertParallelGroup(communicator: communicators[0], numExperts: 4)
        let report = ExpertParallelReport(
            group: group, ranks: gathered, phaseNames: ["routing"], moeLayers: [1, 3],
            routingPhase: "routing", predictedLoads: nil)
        // Σ max = 30 + 10, Σ mean = 20 + 10.
        #expect(abs((report.overloadFactor?.measured ?? 0) - 40.0 / 30.0) < 1e-12)
        #expect(report.overloadFactor?.perLayer["1"]?.rankLoads == [30, 10])
        #expect(report.lines.count == 3)
        let json = try JSONValue.parse(Array(ResultsJSON.encode(report)))
        #expect(json["ranks"]?.arrayValue?[1]["phases"]?["routing"]?["assignments_computed_per_layer"]?["3"]?.intValue == 10)
        #expect(json["ranks"]?.arrayValue?[1]["expert_weight_bytes"]?.intValue == 2001)
        #expect(json["overload_factor"]?["predicted"]?.isNull == true)
        #expect(json["ranks"]?.arrayValue?[0]["experts"] == .array([.int(0), .int(2)]))
    }
}

/// Two ranks in one process: `allGather` returns both ranks' encoded statistics; nothing else is needed.
final class FakeCommunicator: ExpertParallelCommunicator {
    let rank: Int
    let size = 2
    let everyone: [Double]

    init(rank: Int, everyone: [Double]) { self.rank = rank; self.everyone = everyone }

    static func pair(sending ranks: [RankStatistics]) -> [FakeCommunicator] {
        let values = ranks.flatMap { $0.encoded() }
        return [FakeCommunicator(rank: 0, everyone: values), FakeCommunicator(rank: 1, everyone: values)]
    }

    struct Unsupported: Error {}
    func allToAll(_ send: [Int64], countPerRank: Int) throws -> [Int64] { throw Unsupported() }
    func allToAllV(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws {
        throw Unsupported()
    }
    func allGatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer, counts: [Int]) throws { throw Unsupported() }
    func gatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer?, counts: [Int]) throws { throw Unsupported() }
    func allGather(_ values: [Double]) throws -> [Double] { everyone }
    func split(groupSize: Int) throws -> any ExpertParallelCommunicator { self }
}
