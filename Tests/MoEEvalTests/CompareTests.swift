import Foundation
import MoEJSON
import Testing

@testable import MoEEval

/// `moe-eval compare` on hand-made results files whose expected numbers are worked out in the comments.
@Suite struct CompareTests {
    static func file(_ json: String, path: String = "test.json") throws -> ResultsFile {
        try ResultsFile.parse(Data(json.utf8), path: path)
    }

    /// A moe-eval-style file with the given aggregate/inference/cost numbers (other keys as `run` writes them).
    static func moeEvalFile(
        gini: Double, cv: Double, utilization: Double, maxVio: Double, latency: Double?,
        throughput: Double?, deadExperts: [Int] = [0, 0], dropRates: [Double] = [0.1, 0.3],
        activeParams: Double = 2.5, preset: String = "30s", path: String
    ) throws -> ResultsFile {
        let inference =
            latency.map { latency in
                """
                {"latency_ms": \(latency), "throughput_tokens_per_sec": \(throughput ?? 0), "memory_allocated_gb": 1.5, "batch_size": 3, "sampling": "greedy"}
                """
            } ?? "{}"
        let layers = (0..<2).map { i in
            """
            "layer_\(i + 1)": {"gini_coefficient": \(gini), "coefficient_of_variation": \(cv), "expert_utilization_rate": \(utilization),
              "max_violation": \(maxVio), "dead_experts": \(deadExperts[i]), "layer": \(i + 1), "top_k": 2, "num_experts": 4,
              "tokens_per_expert_distribution": [1, 2, 3, 4],
              "capacity_drop_rate": [{"capacity_factor": 1.25, "drop_rate": \(dropRates[i]), "dropped_assignments": 3}],
              "ep_overload_factor_by_degree": [{"degree": 2, "overload_factor": 1.5, "max_rank_load": 9, "mean_rank_load": 6}]}
            """
        }.joined(separator: ",\n")
        return try file(
            """
            {
              "routing_stats": {
                \(layers),
                "aggregate": {"avg_gini_coefficient": \(gini), "avg_coefficient_of_variation": \(cv),
                              "avg_expert_utilization_rate": \(utilization), "num_moe_layers": 2,
                              "max_violation": {"mean": \(maxVio), "median": \(maxVio), "p90": \(maxVio), "min": \(maxVio), "max": \(maxVio), "worst_layer": "layer_1"}}
              },
              "inference_performance": \(inference),
              "computational_cost": {"active_params_billions": \(activeParams), "total_params_billions": 16.0, "gpu_peak_flops": null, "tflops": 7.75},
              "lm_eval_results": {},
              "walltime_seconds": 30.5,
              "checkpoint_dir": "ckpt/\(path)",
              "config": {}, "model_args": {"moe_args": {"num_experts": 4, "top_k": 2}},
              "eval_timestamp": "20260101_000000", "output_file": "\(path)",
              "moe_eval": {"preset": "\(preset)", "routing_input": {"kind": "random"}}
            }
            """, path: path)
    }

    static func row(_ c: Comparison, _ section: String, _ metric: String) -> Comparison.MetricRow? {
        c.metrics.first { $0.section == section && $0.metric == metric }
    }

    // MARK: Directions and marks

    @Test func directionsFollowTheSeedAndTheMetricsDoc() {
        let lower = [
            "avg_gini_coefficient", "avg_coefficient_of_variation", "max_violation.p90", "gini_coefficient_normalized",
            "max_violation_batch_mean", "top1_max_violation", "dead_experts", "near_dead_experts", "ep_overload_factor",
            "step_overload_factor", "capacity_drop_rate[C=1.25].drop_rate", "latency_ms", "decode_latency_ms_per_token_p95",
            "time_to_first_token_ms_p50", "memory_allocated_gb", "memory_reserved_gb", "tflops", "active_params_billions",
            "walltime_seconds", "ep_overload_factor_by_degree[R=8].overload_factor", "aux_balance_loss",
        ]
        let higher = [
            "avg_expert_utilization_rate", "effective_experts_fraction.min", "load_entropy_normalized", "min_load_ratio",
            "throughput_tokens_per_sec", "decode_tokens_per_sec", "prefill_tokens_per_sec", "achieved_gflops_per_sec", "mfu",
        ]
        let neutral = [
            "max_violation_noise_floor", "coefficient_of_variation_noise_floor", "num_moe_layers", "num_tokens",
            "mean_token_routing_entropy", "expert_bias_reroute_rate.mean", "batch_size", "gpu_peak_flops",
            "cpu_sgemm_peak_gflops_per_sec", "measured_forward_tflops", "ep_overload_factor_by_degree[R=8].mean_rank_load",
            "ep_overload_factor_by_degree[R=8].max_rank_load", "capacity_drop_rate[C=1.25].dropped_assignments",
        ]
        for name in lower { #expect(Comparison.direction(of: name) == .lowerIsBetter, "\(name)") }
        for name in higher { #expect(Comparison.direction(of: name) == .higherIsBetter, "\(name)") }
        for name in neutral { #expect(Comparison.direction(of: name) == .neutral, "\(name)") }
        #expect(Comparison.accuracyDirection(of: "acc_norm,none") == .higherIsBetter)
        #expect(Comparison.accuracyDirection(of: "word_perplexity,none") == .lowerIsBetter)
    }

    @Test func marksJudgeTheLastFileAgainstTheFirst() throws {
        let a = try Self.moeEvalFile(gini: 0.25, cv: 0.45, utilization: 0.9, maxVio: 0.6, latency: 100, throughput: 10, path: "a.json")
        let b = try Self.moeEvalFile(gini: 0.15, cv: 0.45, utilization: 0.7, maxVio: 0.3, latency: 150, throughput: 20, path: "b.json")
        let c = Comparison([a, b])
        // Gini 0.25 → 0.15: lower is better → better (these files record no noise floors: judged by the sign of Δ).
        // Utilisation 0.9 → 0.7 of E = 4 experts is 0.4 → 1.2 dead experts: within Poisson noise (threshold
        // 1.96·√((1/4)² + (√1.2/4)²) = 0.727) → same.
        #expect(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient")?.mark == .better)
        #expect(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient")?.noiseThreshold == nil)
        #expect(Self.row(c, "routing_stats.aggregate", "avg_expert_utilization_rate")?.mark == .same)
        #expect(Self.row(c, "routing_stats.aggregate", "avg_coefficient_of_variation")?.mark == .same)
        #expect(Self.row(c, "routing_stats.aggregate", "max_violation.p90")?.mark == .better)
        #expect(Self.row(c, "inference_performance", "latency_ms")?.mark == .worse)
        #expect(Self.row(c, "inference_performance", "throughput_tokens_per_sec")?.mark == .better)
        #expect(Self.row(c, "inference_performance", "batch_size")?.mark == nil)
        #expect(Self.row(c, "routing_stats.aggregate", "num_moe_layers")?.mark == nil)
        // Strings are not metrics, except the worst layer, which is shown as text.
        #expect(Self.row(c, "inference_performance", "sampling") == nil)
        #expect(Self.row(c, "routing_stats.aggregate", "max_violation.worst_layer")?.texts ?? [] == ["layer_1", "layer_1"])
        // Δ = B − A and rel = Δ/|A|: latency 150 − 100 = 50, 50/100 = 0.5.
        let latency = try #require(Self.row(c, "inference_performance", "latency_ms"))
        #expect(latency.delta == 50)
        #expect(latency.relativeDelta == 0.5)
        // One vote per metric: better = Gini, MaxVio (its mean; median/p90/min/max restate it), throughput
        // (10 → 20, beyond the 10% timing tolerance); worse = latency (100 → 150). Everything else that is judged
        // is the same within noise. These files record no noise floors, so Gini, CV, MaxVio and the EP overload
        // factor are judged without a noise model (the drop rate has one: from the expert loads).
        #expect(c.summary.better == 3 && c.summary.worse == 1, "\(c.summary)")
        #expect(c.summary.withoutNoiseModel == 4, "\(c.summary)")
        #expect(c.summary.winner == "B")
    }

    /// The seed's verdict counts each metric once, however many summary statistics the aggregate lists for it.
    @Test func summaryStatisticsOfOneMetricAreOneVote() throws {
        let a = try Self.moeEvalFile(gini: 0.2, cv: 0.4, utilization: 0.9, maxVio: 0.6, latency: 100, throughput: 10, path: "a.json")
        let b = try Self.moeEvalFile(gini: 0.2, cv: 0.4, utilization: 0.9, maxVio: 0.3, latency: 130, throughput: 7, path: "b.json")
        let c = Comparison([a, b])
        // MaxVio improves in 5 aggregate rows (mean, median, p90, min, max) but votes once; latency and throughput
        // get worse beyond the 10% timing tolerance: A wins 2 to 1 (the five rows alone would have made B the winner).
        #expect(Self.row(c, "routing_stats.aggregate", "max_violation.p90")?.mark == .better)
        #expect(c.summary.better == 1 && c.summary.worse == 2, "\(c.summary)")
        #expect(c.summary.winner == "A")
        let perLayer = Comparison([a, b], options: .init(perLayer: true))
        #expect(
            perLayer.summary.better == c.summary.better && perLayer.summary.worse == c.summary.worse
                && perLayer.summary.same == c.summary.same,
            "per-layer rows restate the aggregate and do not vote")
    }

    // MARK: Bands

    @Test func seedBandsAtTheirBoundaries() {
        // The seed's table: Gini <0.1 excellent, 0.1–0.2 good, >0.3 poor; CV <0.2, 0.2–0.4, >0.5; util >0.95, 0.8–0.95, <0.8.
        let cases: [(String, Double, SeedBand?)] = [
            ("avg_gini_coefficient", 0.05, .excellent), ("gini_coefficient", 0.1, .good), ("gini_coefficient", 0.2, .good),
            ("gini_coefficient", 0.25, .fair), ("gini_coefficient", 0.3, .fair), ("gini_coefficient", 0.31, .poor),
            ("avg_coefficient_of_variation", 0.19, .excellent), ("coefficient_of_variation", 0.2, .good),
            ("coefficient_of_variation", 0.4, .good), ("coefficient_of_variation", 0.45, .fair), ("coefficient_of_variation", 0.6, .poor),
            ("avg_expert_utilization_rate", 0.96, .excellent), ("expert_utilization_rate", 0.95, .good),
            ("expert_utilization_rate", 0.8, .good), ("expert_utilization_rate", 0.79, .poor),
            ("gini_coefficient_normalized", 0.05, nil), ("coefficient_of_variation_normalized", 0.05, nil), ("max_violation", 0.01, nil),
        ]
        for (metric, value, band) in cases { #expect(SeedBand.of(metric: metric, value: value) == band, "\(metric) \(value)") }
    }

    @Test func bandsAppearPerFileInTheRows() throws {
        let a = try Self.moeEvalFile(gini: 0.35, cv: 0.1, utilization: 0.85, maxVio: 0.6, latency: nil, throughput: nil, path: "a.json")
        let b = try Self.moeEvalFile(gini: 0.05, cv: 0.6, utilization: 1.0, maxVio: 0.3, latency: nil, throughput: nil, path: "b.json")
        let c = Comparison([a, b])
        #expect(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient")?.bands ?? [] == [.poor, .excellent])
        #expect(Self.row(c, "routing_stats.aggregate", "avg_coefficient_of_variation")?.bands ?? [] == [.excellent, .poor])
        #expect(Self.row(c, "routing_stats.aggregate", "avg_expert_utilization_rate")?.bands ?? [] == [.good, .excellent])
        #expect(Self.row(c, "routing_stats.aggregate", "max_violation.mean")?.bands == nil)
    }

    // MARK: Relative delta

    @Test func relativeDeltaWithAZeroBaseline() throws {
        #expect(Comparison.relativeDelta(from: 0, to: 0) == 0)
        #expect(Comparison.relativeDelta(from: 0, to: 5) == nil)
        #expect(Comparison.relativeDelta(from: 2, to: 3) == 0.5)
        #expect(Comparison.relativeDelta(from: -2, to: -3) == -0.5)
        // Dead experts 0 → 2 in one layer: mean over layers 0 → 1; Δ = 1, no relative change; a Poisson count
        // of 0 against 1 is within noise (threshold 1.96·√(1 + 1) = 2.77): same.
        let a = try Self.moeEvalFile(gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: nil, throughput: nil, path: "a.json")
        let b = try Self.moeEvalFile(
            gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: nil, throughput: nil,
            deadExperts: [0, 2], path: "b.json")
        let row = try #require(Self.row(Comparison([a, b]), "routing_stats.layers (mean over layers)", "dead_experts"))
        #expect(row.values == [0, 1])
        #expect(row.delta == 1)
        #expect(row.relativeDelta == nil)
        #expect(row.mark == .same)
        #expect(abs((row.noiseThreshold ?? 0) - 2.771808) < 1e-6)
        #expect(Comparison([a, b]).text().contains("n/a"))
    }

    @Test func perLayerListsAreAveragedOverLayers() throws {
        // capacity drop at C = 1.25: layers 0.1 and 0.3 → mean 0.2; layers 0.2 and 0.2 → 0.2 (same).
        let a = try Self.moeEvalFile(gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: nil, throughput: nil, path: "a.json")
        let b = try Self.moeEvalFile(
            gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: nil, throughput: nil,
            dropRates: [0.2, 0.2], path: "b.json")
        let c = Comparison([a, b], options: .init(perLayer: true))
        let drop = try #require(Self.row(c, "routing_stats.layers (mean over layers)", "capacity_drop_rate[C=1.25].drop_rate"))
        #expect(abs((drop.values[0] ?? 0) - 0.2) < 1e-15)
        #expect(drop.direction == .lowerIsBetter)
        #expect(
            Self.row(c, "routing_stats.layers (mean over layers)", "ep_overload_factor_by_degree[R=2].overload_factor")?.values == [
                1.5, 1.5,
            ])
        // Keys the aggregate already summarises are not repeated as layer means; identity keys are never averaged.
        #expect(Self.row(c, "routing_stats.layers (mean over layers)", "max_violation") == nil)
        #expect(Self.row(c, "routing_stats.layers (mean over layers)", "gini_coefficient") == nil)
        #expect(Self.row(c, "routing_stats.layers (mean over layers)", "top_k") == nil)
        // --layers: one row per layer.
        #expect(Self.row(c, "routing_stats.layer_2", "capacity_drop_rate[C=1.25].drop_rate")?.values == [0.3, 0.2])
        #expect(Self.row(c, "routing_stats.layer_1", "gini_coefficient")?.bands ?? [] == [.good, .good])
    }

    // MARK: Missing sections and other formats

    @Test func missingSectionsAreReportedNotFatal() throws {
        let a = try Self.moeEvalFile(gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: 100, throughput: 10, path: "a.json")
        let b = try Self.file(
            """
            {"routing_stats": {"aggregate": {"avg_gini_coefficient": 0.2, "num_moe_layers": 0}}, "inference_performance": {},
             "walltime_seconds": 3, "moe_eval": {"preset": "1min"}}
            """, path: "b.json")
        let c = Comparison([a, b])
        #expect(c.notes.contains("B has no inference_performance"))
        #expect(c.notes.contains("B has no computational_cost"))
        #expect(c.notes.contains("no file has lm_eval_results"))
        #expect(c.notes.contains { $0.hasPrefix("presets differ (A 30s, B 1min)") })
        let latency = try #require(Self.row(c, "inference_performance", "latency_ms"))
        #expect(latency.values == [100, nil])
        #expect(latency.delta == nil && latency.mark == nil)
        #expect(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient")?.values == [0.1, 0.2])
        // A null stays a missing value: gpu_peak_flops is null on CPU.
        #expect(Self.row(c, "computational_cost", "gpu_peak_flops")?.values == [nil, nil])
        let text = c.text()
        #expect(text.contains("B has no inference_performance"))
        #expect(text.contains("—"))
    }

    /// The seed document's example file, verbatim apart from float token counts per layer.
    static let seedExample = """
        {
          "routing_stats": {
            "layer_1": {"total_tokens_routed": 2560.0, "num_experts": 4, "mean_tokens_per_expert": 640.0, "std_tokens_per_expert": 100.0,
                        "max_tokens_per_expert": 800.0, "min_tokens_per_expert": 500.0, "coefficient_of_variation": 0.15,
                        "expert_utilization_rate": 1.0, "gini_coefficient": 0.12, "tokens_per_expert_distribution": [500.0, 600.0, 660.0, 800.0]},
            "aggregate": {"avg_gini_coefficient": 0.11, "avg_coefficient_of_variation": 0.14, "avg_expert_utilization_rate": 0.96, "num_moe_layers": 26}
          },
          "inference_performance": {"latency_ms": 65067.35, "throughput_tokens_per_sec": 1.97, "memory_allocated_gb": 17.29, "memory_reserved_gb": 18.34},
          "computational_cost": {"total_flops": 7750000000000, "tflops": 7.75, "active_params_billions": 15.71, "num_flops_per_token": 1.51e+10, "gpu_peak_flops": null},
          "lm_eval_results": {"hellaswag": {"acc,none": 0.34, "acc_stderr,none": 0.048, "acc_norm,none": 0.37, "acc_norm_stderr,none": 0.049, "alias": "hellaswag"}},
          "walltime_seconds": 826.61,
          "checkpoint_dir": "./outputs/checkpoint/step-1000",
          "config": {"job": {"description": "DeepSeek-V3 MoE ~10B training"}, "model": {"name": "deepseek_v3", "flavor": "10B"}},
          "model_args": {"dim": 1264, "n_layers": 27, "n_heads": 16, "moe_args": {"num_experts": 64, "top_k": 6}},
          "eval_timestamp": "20260203_004013",
          "output_file": "/data/repos/torchtitan_moe/outputs/eval/eval_results_20260203_004013.json"
        }
        """

    @Test func seedFormatFileWorksAndItsActiveParamsAreTheTotal() throws {
        let seed = try Self.file(Self.seedExample, path: "seed.json")
        #expect(seed.isSeedFormat)
        let ours = try Self.moeEvalFile(
            gini: 0.1, cv: 0.1, utilization: 1, maxVio: 0.1, latency: 1000, throughput: 5,
            activeParams: 2.5, path: "ours.json")
        #expect(!ours.isSeedFormat)
        let c = Comparison([seed, ours])
        #expect(c.files.map(\.format) == ["seed", "moe-eval"])
        #expect(
            c.notes.contains {
                $0.contains("A was written by the seed's scripts") && $0.contains("active_params_billions (15.71) is really the total")
            })
        // The seed's 15.71 moves to the total; its active count is unknown.
        #expect(Self.row(c, "computational_cost", "active_params_billions")?.values == [nil, 2.5])
        #expect(Self.row(c, "computational_cost", "total_params_billions")?.values == [15.71, 16.0])
        #expect(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient")?.values == [0.11, 0.1])
        // Float counts average like any other number: (2560.0) over the seed's one layer.
        #expect(Self.row(c, "routing_stats.layers (mean over layers)", "total_tokens_routed")?.values.first == 2560)
        #expect(Self.row(c, "inference_performance", "latency_ms")?.mark == .better)
        #expect(c.notes.contains { $0.hasPrefix("router shapes differ (A 64 experts top-6, B 4 experts top-2)") })
        // The seed's accuracy against a file without it: shown, not compared.
        let accuracy = try #require(c.accuracy.first { $0.metric == "acc_norm,none" })
        #expect(accuracy.values == [0.37, nil] && accuracy.standardErrors == [0.049, nil] && accuracy.delta == nil)
        #expect(!c.accuracy.contains { $0.metric == "alias" })
    }

    @Test func pythonNonFiniteNumbersParse() throws {
        let file = try Self.file(
            """
            {"routing_stats": {"layer_1": {"coefficient_of_variation": NaN}, "aggregate": {"avg_coefficient_of_variation": NaN, "num_moe_layers": 1}},
             "computational_cost": {"tflops": Infinity, "total_flops": -Infinity}}
            """)
        #expect(file.routingAggregate?["avg_coefficient_of_variation"]?.doubleValue?.isNaN == true)
        #expect(file.section("computational_cost")?["total_flops"]?.doubleValue == -.infinity)
        let c = Comparison([file, file])
        #expect(Self.row(c, "routing_stats.aggregate", "avg_coefficient_of_variation")?.mark == nil)
        #expect(try JSONSerialization.jsonObject(with: c.jsonData()) is [String: Any])
    }

    @Test func notAResultsFileIsOneClearError() {
        func message(_ text: String, _ path: String) -> String {
            do {
                _ = try ResultsFile.parse(Data(text.utf8), path: path)
                return "parsed"
            } catch {
                return String(describing: error)
            }
        }
        let modelArgs = message(#"{"dim": 32, "n_layers": 4, "moe_args": {"num_experts": 8}}"#, "/tmp/model_args.json")
        #expect(modelArgs.hasPrefix("/tmp/model_args.json is not an eval results file"))
        #expect(modelArgs.contains("dim, n_layers, moe_args"))
        #expect(message("hello, world", "notes.txt").hasPrefix("notes.txt is not an eval results file: not valid JSON"))
        #expect(message("[1, 2, 3]", "list.json") == "list.json is not an eval results file: the JSON is an array, not an object")
        #expect(
            message(#"{"routing_stats": "none"}"#, "odd.json")
                == "odd.json is not an eval results file: routing_stats is a string, not an object")
        #expect(message(#"{"routing_stats": {"#, "cut.json").hasPrefix("cut.json is not an eval results file: not valid JSON"))
        #expect(message("", "empty.json").hasPrefix("empty.json is not an eval results file"))
        #expect(!message("{}", "braces.json").contains("\n"))
        #expect(throws: ResultsFile.LoadError.self) { try ResultsFile.load(URL(fileURLWithPath: "/nonexistent/eval.json")) }
    }

    // MARK: Accuracy and paired statistics

    @Test func accuracyDeltaWithStandardError() throws {
        let a = try Self.file(
            #"{"lm_eval_results": {"hellaswag": {"acc,none": 0.34, "acc_stderr,none": 0.048, "acc_norm,none": 0.37, "acc_norm_stderr,none": "N/A"}}}"#
        )
        let b = try Self.file(#"{"lm_eval_results": {"hellaswag": {"acc,none": 0.44, "acc_stderr,none": 0.049, "acc_norm,none": 0.40}}}"#)
        let c = Comparison([a, b])
        let acc = try #require(c.accuracy.first { $0.metric == "acc,none" })
        // Δ = 0.44 − 0.34 = 0.10; SE_Δ = √(0.048² + 0.049²) = √(0.002304 + 0.002401) = √0.004705 = 0.0685930…
        #expect(abs((acc.delta ?? 0) - 0.10) < 1e-12)
        #expect(abs((acc.deltaStandardError ?? 0) - 0.068593002558570) < 1e-12)
        // z = 0.10 / 0.068593 = 1.4579 < 1.96: not significant; 95% CI 0.10 ± 1.96·0.068593 = [−0.0344, 0.2344].
        #expect(abs((acc.z ?? 0) - 1.457874) < 1e-5)
        #expect(acc.significant == false)
        #expect(abs((acc.ci95?[0] ?? 0) - -0.034441) < 1e-5 && abs((acc.ci95?[1] ?? 0) - 0.234441) < 1e-5)
        // Not significant: the same within noise, although Δ is positive.
        #expect(acc.mark == .same)
        #expect(acc.noiseSource?.hasPrefix("unpaired") == true)
        // "N/A" standard errors (lm-eval with --limit) give a Δ without SE.
        let norm = try #require(c.accuracy.first { $0.metric == "acc_norm,none" })
        #expect(norm.standardErrors == [nil, nil] && norm.deltaStandardError == nil && abs((norm.delta ?? 0) - 0.03) < 1e-12)
        // … and so no mark: without an uncertainty a difference cannot count.
        #expect(norm.mark == nil)
    }

    @Test func pairedStatisticsByHand() {
        // 50 documents: 25 both right, 10 only A right (b), 3 only B right (c), 12 both wrong.
        let s = PairedStatistics(bothCorrect: 25, onlyACorrect: 10, onlyBCorrect: 3, bothWrong: 12)
        // acc_A = 35/50 = 0.70, acc_B = 28/50 = 0.56, Δ = (c − b)/n = −7/50 = −0.14.
        #expect(s.documents == 50)
        #expect(abs(s.accuracyA - 0.70) < 1e-15 && abs(s.accuracyB - 0.56) < 1e-15)
        #expect(abs(s.delta - -0.14) < 1e-15)
        // d_i ∈ {−1, 0, 1}: Σd² = 13, sample variance = (13 − 50·0.14²)/49 = (13 − 0.98)/49 = 601/2450 = 0.245306…,
        // SE_Δ = √(0.245306/50) = 0.0700437181…
        #expect(abs((s.deltaStandardError ?? 0) - 0.07004371812646436) < 1e-12)
        // MDE = (1.959964 + 0.841621)·SE_Δ = 2.801585·0.0700437 = 0.196233…
        #expect(abs((s.minimumDetectableEffect ?? 0) - 0.19623344531784) < 1e-9)
        // Unpaired: √(0.7·0.3/49 + 0.56·0.44/49) = √(0.00428571 + 0.00502857) = 0.0965105…
        #expect(abs((s.unpairedStandardError ?? 0) - 0.09651054716602592) < 1e-12)
        // Exact McNemar, b = 10, c = 3: 2·P(X ≤ 3), X ~ Bin(13, ½) = 2·(1 + 13 + 78 + 286)/8192 = 756/8192 = 0.0922851…
        #expect(abs(s.mcnemarExactP - 0.09228515625) < 1e-12)
        let fromPairs = PairedStatistics(
            pairs: Array(repeating: (true, true), count: 25) + Array(repeating: (true, false), count: 10)
                + Array(repeating: (false, true), count: 3) + Array(repeating: (false, false), count: 12))
        #expect(fromPairs == s)
    }

    @Test func mcnemarExactValues() {
        // 2·Σ_{i ≤ min(b,c)} C(b+c, i)/2^(b+c), capped at 1.
        #expect(PairedStatistics.mcnemarExactP(0, 0) == 1)
        #expect(PairedStatistics.mcnemarExactP(2, 2) == 1) // 2·11/16 > 1
        #expect(abs(PairedStatistics.mcnemarExactP(0, 6) - 0.03125) < 1e-15) // 2·1/64
        #expect(abs(PairedStatistics.mcnemarExactP(5, 15) - 0.04138946533203125) < 1e-12) // 2·(1+20+190+1140+4845+15504)/2^20
        #expect(abs(PairedStatistics.mcnemarExactP(3, 10) - 0.09228515625) < 1e-12) // symmetric in b, c
        // P(X ≤ 1000), X ~ Bin(2000, ½) = ½ + C(2000,1000)/2^2001 = 0.50891950557… (exact rational arithmetic).
        #expect(abs(PairedStatistics.binomialCDF(1000, trials: 2000) - 0.5089195055729272) < 1e-10)
        #expect(PairedStatistics.binomialCDF(-1, trials: 5) == 0 && PairedStatistics.binomialCDF(5, trials: 5) == 1)
    }

    @Test func pairedResultsFromPerSampleRecords() throws {
        // Documents 0…5 in both files, 6 only in A, 7 only in B, 8 with different prompts (hash), plus junk.
        // correct: A = 1 1 0 0 1 1, B = 1 0 1 0 0 0 over docs 0…5 → both 1, only A 3 (docs 1, 4, 5), only B 1 (doc 2), both wrong 1.
        let a = try Self.file(
            """
            {"lm_eval_results": {"arc_easy": {"acc,none": 0.6}}, "lm_eval_samples": {"arc_easy": [
              {"doc_id": 0, "correct": 1, "acc_norm": 1}, {"doc_id": 1, "correct": 1, "acc_norm": 0}, {"doc_id": 2, "correct": 0, "acc_norm": 0},
              {"doc_id": 3, "correct": 0, "acc_norm": 0}, {"doc_id": 4, "correct": true, "acc_norm": 1}, {"doc_id": 5, "correct": 1.0, "acc_norm": 1},
              {"doc_id": 6, "correct": 1}, {"doc_id": 8, "correct": 1, "prompt_hash": "x"}, {"correct": 1}, {"doc_id": 9, "correct": 0.5}]}}
            """, path: "a.json")
        let b = try Self.file(
            """
            {"lm_eval_results": {"arc_easy": {"acc,none": 0.3}}, "lm_eval_samples": {"arc_easy": [
              {"doc_id": 0, "correct": 1, "acc_norm": 1}, {"doc_id": 1, "correct": 0, "acc_norm": 1}, {"doc_id": 2, "correct": 1, "acc_norm": 1},
              {"doc_id": 3, "correct": 0, "acc_norm": 1}, {"doc_id": 4, "correct": 0, "acc_norm": 1}, {"doc_id": 5, "correct": 0, "acc_norm": 1},
              {"doc_id": 7, "correct": 1}, {"doc_id": 8, "correct": 0, "prompt_hash": "y"}]}}
            """, path: "b.json")
        let c = Comparison([a, b])
        let correct = try #require(c.paired.first { $0.task == "arc_easy" && $0.score == "correct" })
        #expect(correct.from == "A" && correct.to == "B")
        let s = correct.statistics
        #expect(s.documents == 6 && s.bothCorrect == 1 && s.onlyACorrect == 3 && s.onlyBCorrect == 1 && s.bothWrong == 1)
        // Δ = (1 − 3)/6 = −1/3; McNemar b = 3, c = 1: 2·(1 + 4)/16 = 0.625.
        #expect(abs(s.delta - -1.0 / 3) < 1e-15)
        #expect(abs(s.mcnemarExactP - 0.625) < 1e-15)
        // Σd² = 4, var = (4 − 6/9)/5 = 2/3, SE = √(2/3/6) = 1/3.
        #expect(abs((s.deltaStandardError ?? 0) - 1.0 / 3) < 1e-12)
        // acc_norm: A = 1 0 0 0 1 1, B = 1 1 1 1 1 1 → both 3, only B 3: p = 2·(1/8) = 0.25, Δ = +0.5.
        let norm = try #require(c.paired.first { $0.score == "acc_norm" })
        #expect(norm.statistics.onlyBCorrect == 3 && norm.statistics.onlyACorrect == 0 && abs(norm.statistics.mcnemarExactP - 0.25) < 1e-15)
        #expect(c.notes.contains { $0.hasPrefix("arc_easy: 1 doc_id(s) have different doc/prompt/target hashes") })
        #expect(c.notes.contains("arc_easy: paired on the 6 documents A and B share (A has 1 more, B 1 more)"))
        #expect(c.notes.contains("A: lm_eval_samples.arc_easy: 2 record(s) without a doc_id or without 0/1 scores were skipped"))
        #expect(c.text().contains("McNemar p"))
    }

    // MARK: N files

    @Test func threeFilesGiveATableOverCheckpoints() throws {
        let files = try [(0.3, 0.9), (0.2, 0.95), (0.1, 0.99)].enumerated().map { index, values in
            try Self.moeEvalFile(
                gini: values.0, cv: 0.3, utilization: values.1, maxVio: 0.5, latency: nil, throughput: nil,
                path: "step-\((index + 1) * 500).json")
        }
        let c = Comparison(files)
        #expect(c.files.map(\.label) == ["A", "B", "C"])
        let gini = try #require(Self.row(c, "routing_stats.aggregate", "avg_gini_coefficient"))
        #expect(gini.values == [0.3, 0.2, 0.1])
        // Δ = last − first = 0.1 − 0.3 = −0.2 → better; rel = −0.2/0.3.
        #expect(abs((gini.delta ?? 0) - -0.2) < 1e-15)
        #expect(abs((gini.relativeDelta ?? 0) - -2.0 / 3) < 1e-12)
        #expect(gini.mark == .better)
        #expect(gini.bands ?? [] == [.fair, .good, .good])
        let text = c.text()
        #expect(text.contains("C − A (last − first)"))
        let header = try #require(text.split(separator: "\n").first { $0.contains("metric") && $0.contains("Δ (last−first)") })
        #expect(header.contains(" A ") && header.contains(" B ") && header.contains(" C "))
        let json = try #require(try JSONSerialization.jsonObject(with: c.jsonData()) as? [String: Any])
        #expect(
            (json["files"] as? [[String: Any]])?.compactMap { $0["path"] as? String } == [
                "step-500.json", "step-1000.json", "step-1500.json",
            ])
    }

    @Test func threeFilesPairConsecutiveAndFirstLast() throws {
        func file(_ correct: [Int], _ path: String) throws -> ResultsFile {
            let records = correct.enumerated().map { #"{"doc_id": "q\#($0)", "correct": \#($1)}"# }.joined(separator: ",")
            return try Self.file(#"{"lm_eval_samples": {"mmlu": [\#(records)]}}"#, path: path)
        }
        let c = Comparison([try file([0, 0, 1], "a"), try file([1, 0, 1], "b"), try file([1, 1, 1], "c")])
        #expect(c.paired.map { "\($0.from)\($0.to)" } == ["AB", "BC", "AC"])
        #expect(c.paired.map(\.statistics.onlyBCorrect) == [1, 1, 2])
        #expect(c.notes.contains("no file has routing_stats"))
    }
}
