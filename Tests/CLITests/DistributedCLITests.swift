import Foundation
import MoECheckpoint
import Testing

/// `mpirun -np N moe-eval …` (expert parallelism, docs/DISTRIBUTED.md) against the same command in one process.
/// They need Open MPI and a binary built with `--traits MPI`. Outside CI, a machine without them reports these
/// tests as skipped (with the reason); with CI=true they run regardless and fail when MPI is missing.
enum MPI {
    static var inCI: Bool { ProcessInfo.processInfo.environment["CI"] == "true" }

    static var mpirun: URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { URL(fileURLWithPath: String($0)).appendingPathComponent("mpirun") }
            .first { FileManager.default.isExecutableFile(atPath: $0.path) }
    }

    /// Whether the binary under test links libmpi (a build with `--traits MPI`).
    static var binaryHasMPI: Bool {
        guard let r = try? run(URL(fileURLWithPath: "/usr/bin/ldd"), [CLI.binary.path], timeout: 30) else { return false }
        return r.stdout.contains("libmpi")
    }

    static let available = mpirun != nil && binaryHasMPI
    static let enabled = inCI || available
    static let skipReason: Comment =
        "needs mpirun and a moe-eval built with --traits MPI (scripts/test.sh builds one when Open MPI is installed)"

    /// Fails with the reason when MPI is missing (in CI).
    static func require() throws {
        #expect(mpirun != nil, "mpirun not found on PATH: apt-get install openmpi-bin libopenmpi-dev")
        #expect(binaryHasMPI, "\(CLI.binary.path) does not link libmpi: build it with swift build -c release --traits MPI")
        _ = try #require(mpirun)
        try #require(binaryHasMPI)
    }

    /// `mpirun -np N --oversubscribe moe-eval arguments…`, killed (and reported as hung) after `timeout` seconds.
    static func launch(
        _ processes: Int, _ arguments: [String], timeout: TimeInterval = 180,
        whileRunning: ((Process) throws -> Void)? = nil
    ) throws -> CLI.Result {
        try run(
            try #require(mpirun), ["-np", String(processes), "--oversubscribe", CLI.binary.path] + arguments,
            timeout: timeout, whileRunning: whileRunning)
    }

    static func run(
        _ executable: URL, _ arguments: [String], timeout: TimeInterval,
        whileRunning: ((Process) throws -> Void)? = nil
    ) throws -> CLI.Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        var environment = ProcessInfo.processInfo.environment
        environment["OMPI_ALLOW_RUN_AS_ROOT"] = "1"
        environment["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        process.environment = environment
        let out = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-out-\(UUID().uuidString)")
        let err = FileManager.default.temporaryDirectory.appendingPathComponent("mpi-err-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out.path, contents: nil)
        _ = FileManager.default.createFile(atPath: err.path, contents: nil)
        defer { try? FileManager.default.removeItem(at: out); try? FileManager.default.removeItem(at: err) }
        process.standardOutput = try FileHandle(forWritingTo: out)
        process.standardError = try FileHandle(forWritingTo: err)
        try process.run()
        try whileRunning?(process)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(50_000) }
        let hung = process.isRunning
        if hung {
            kill(-process.processIdentifier, SIGKILL)
            process.terminate()
            process.waitUntilExit()
        }
        process.waitUntilExit()
        let stderr = (try? String(contentsOf: err, encoding: .utf8)) ?? ""
        #expect(
            !hung,
            "\(executable.lastPathComponent) \(arguments.joined(separator: " ")) still ran after \(timeout) s: \(stderr.suffix(2000))")
        return CLI.Result(
            status: hung ? -1 : process.terminationStatus,
            stdout: (try? String(contentsOf: out, encoding: .utf8)) ?? "", stderr: stderr)
    }
}

@Suite(.enabled(if: MPI.enabled, MPI.skipReason), .serialized)
struct DistributedCLITests {
    static let demo = CLI.repoRoot.appendingPathComponent("assets/demo")

    static func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
    }

    /// Largest |a − b| over the logits, and whether the routed experts are identical.
    static func compareForward(
        _ single: [String: Any], _ parallel: [String: Any]
    ) throws -> (maxLogitDifference: Double, count: Int, sameExperts: Bool, maxWeightDifference: Double) {
        func flat(_ value: Any?) -> [Double] {
            if let list = value as? [Any] { return list.flatMap(flat) }
            return (value as? NSNumber).map { [$0.doubleValue] } ?? []
        }
        let a = flat(single["logits"]), b = flat(parallel["logits"])
        #expect(a.count == b.count && !a.isEmpty)
        let logitDifference = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        let routingA = try #require(single["routing"] as? [String: [String: Any]])
        let routingB = try #require(parallel["routing"] as? [String: [String: Any]])
        #expect(Set(routingA.keys) == Set(routingB.keys) && !routingA.isEmpty)
        var sameExperts = true, weightDifference = 0.0
        for (layer, entry) in routingA {
            let experts = (entry["experts"] as? NSArray), other = (routingB[layer]?["experts"] as? NSArray)
            sameExperts = sameExperts && experts != nil && experts == other
            let w = flat(entry["weights"]), v = flat(routingB[layer]?["weights"])
            weightDifference = max(weightDifference, w.count == v.count ? (zip(w, v).map { abs($0 - $1) }.max() ?? 0) : .infinity)
        }
        return (logitDifference, a.count, sameExperts, weightDifference)
    }

    /// The stated tolerance: per-rank GEMMs see fewer rows than the single process's, so fp32 sums may round
    /// differently (observed ≤ 2e-6 on logits of magnitude ~5); routed experts must be identical.
    static let logitTolerance = 1e-4

    static func forwardBoth(
        checkpoint: URL, modelArgs: URL, tokens: URL, processes: Int = 2,
        parallelArguments: [String] = []
    ) throws -> (single: [String: Any], parallel: [String: Any], stderr: String) {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let common = [
            "forward", "--checkpoint", checkpoint.path, "--model-args", modelArgs.path, "--tokens-file", tokens.path, "--threads", "1",
        ]
        let one = try CLI.run(common + ["--output", dir.appendingPathComponent("single.json").path])
        #expect(one.status == 0, "\(one.stderr)")
        let many = try MPI.launch(processes, common + parallelArguments + ["--output", dir.appendingPathComponent("parallel.json").path])
        #expect(many.status == 0, "\(many.stderr)")
        return (try json(dir.appendingPathComponent("single.json")), try json(dir.appendingPathComponent("parallel.json")), many.stderr)
    }

    @Test(arguments: [
        "v022_softmax_basic", "v022_two_process_fsdp", "v022_sigmoid_groups_yarn", "v030_sigmoid_groups_qlora",
        "v022_no_shared_score_before",
    ])
    func forwardOnFixtureMatchesOneProcess(variant: String) throws {
        try MPI.require()
        let dir = CLI.dsv3Fixtures.appendingPathComponent(variant)
        let (single, parallel, stderr) = try Self.forwardBoth(
            checkpoint: dir.appendingPathComponent("checkpoint"),
            modelArgs: dir.appendingPathComponent("model_args.json"),
            tokens: dir.appendingPathComponent("tokens.json"))
        let c = try Self.compareForward(single, parallel)
        #expect(c.maxLogitDifference <= Self.logitTolerance, "\(variant): max |Δlogit| \(c.maxLogitDifference) over \(c.count)")
        #expect(c.sameExperts, "\(variant): routed experts differ")
        #expect(c.maxWeightDifference <= 1e-5, "\(variant): max |Δweight| \(c.maxWeightDifference)")
        #expect(stderr.contains("rank 0: experts 0..<4") && stderr.contains("rank 1: experts 4..<8"), "\(stderr)")
    }

    /// Four processes on a batch of two sequences: two ranks have no tokens and only serve their experts.
    @Test func ranksWithoutTokensServeTheirExperts() throws {
        try MPI.require()
        let dir = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        let (single, parallel, stderr) = try Self.forwardBoth(
            checkpoint: dir.appendingPathComponent("checkpoint"),
            modelArgs: dir.appendingPathComponent("model_args.json"),
            tokens: dir.appendingPathComponent("tokens.json"), processes: 4)
        let c = try Self.compareForward(single, parallel)
        #expect(c.maxLogitDifference <= Self.logitTolerance && c.sameExperts, "max |Δlogit| \(c.maxLogitDifference)")
        #expect(stderr.contains("rank 3: experts 6..<8"), "\(stderr)")
    }

    @Test func forwardOnDemoMatchesOneProcess() throws {
        try MPI.require()
        let (single, parallel, _) = try Self.forwardBoth(
            checkpoint: Self.demo.appendingPathComponent("checkpoint/step-800"),
            modelArgs: Self.demo.appendingPathComponent("model_args.json"),
            tokens: Self.demo.appendingPathComponent("reference_tokens.json"))
        let c = try Self.compareForward(single, parallel)
        #expect(c.maxLogitDifference <= Self.logitTolerance, "max |Δlogit| \(c.maxLogitDifference) over \(c.count)")
        #expect(c.sameExperts)
    }

    /// The demo evaluation (routing statistics, inference benchmark, hellaswag) under `mpirun -np 2` writes one
    /// results file whose routing statistics and task metrics equal the one-process run's exactly.
    @Test func runOnDemoMatchesOneProcess() throws {
        try MPI.require()
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let one = dir.appendingPathComponent("one"), two = dir.appendingPathComponent("two")
        let common = [
            "run", "--preset", "1min", "--threads", "1", "--quiet", "--checkpoint",
            Self.demo.appendingPathComponent("checkpoint/step-800").path,
            "--config", Self.demo.appendingPathComponent("train.toml").path,
            "--model-args", Self.demo.appendingPathComponent("model_args.json").path,
        ]
        let a = try CLI.run(common + ["--output-dir", one.path])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try MPI.launch(2, common + ["--output-dir", two.path])
        #expect(b.status == 0, "\(b.stderr)")
        let singleFile = try #require(try FileManager.default.contentsOfDirectory(atPath: one.path).first)
        let files = try FileManager.default.contentsOfDirectory(atPath: two.path)
        #expect(files.count == 1, "rank 0 alone writes the results file: \(files)")
        let single = try Self.json(one.appendingPathComponent(singleFile))
        let parallel = try Self.json(two.appendingPathComponent(try #require(files.first)))

        for key in ["routing_stats", "lm_eval_results"] {
            let x = try #require(single[key] as? NSDictionary, "\(key) missing in the one-process results")
            let y = try #require(parallel[key] as? NSDictionary, "\(key) missing in the mpirun results")
            #expect(x == y, "\(key) differs between one process and mpirun -np 2")
        }
        let run = try #require(parallel["moe_eval"] as? [String: Any])
        let ep = try #require(run["expert_parallel"] as? [String: Any])
        let ranks = try #require(ep["ranks"] as? [[String: Any]])
        #expect(ranks.count == 2)
        // MFU divides the rate of both ranks' work by both ranks' sgemm peaks (issue 12: not one rank's peak).
        let cost = try #require(parallel["computational_cost"] as? [String: Any])
        let singleCost = try #require(single["computational_cost"] as? [String: Any])
        #expect(cost["sgemm_peak_processes"] as? Int == 2 && singleCost["sgemm_peak_processes"] as? Int == 1)
        let achieved = try #require(cost["achieved_gflops_per_sec"] as? Double),
            peak = try #require(cost["cpu_sgemm_peak_gflops_per_sec"] as? Double)
        #expect(abs(try #require(cost["mfu"] as? Double) - achieved / peak) < 1e-9)
        #expect(cost["num_flops_per_token"] as? Int == singleCost["num_flops_per_token"] as? Int)
        // Demo: 3 MoE layers × (w1, w2, w3) × 8 experts × 64×64 bf16 → each rank holds half of 589,824 bytes.
        let args = try Self.json(Self.demo.appendingPathComponent("model_args.json"))
        let moe = try #require(args["moe_args"] as? [String: Any])
        let layers = (args["n_layers"] as! Int) - (args["n_dense_layers"] as! Int)
        let allExperts = layers * 3 * (moe["num_experts"] as! Int) * (args["dim"] as! Int) * (args["moe_inter_dim"] as! Int) * 2
        for rank in ranks {
            #expect(rank["expert_weight_bytes"] as? Int == allExperts / 2, "\(rank)")
            #expect((rank["resident_bytes_after_load"] as? Int ?? 0) > 0)
        }
        #expect(ranks[0]["dense_weight_bytes"] as? Int == ranks[1]["dense_weight_bytes"] as? Int)
        let overload = try #require(ep["overload_factor"] as? [String: Any])
        let measured = try #require(overload["measured"] as? Double), predicted = try #require(overload["predicted"] as? Double)
        #expect(abs(measured - predicted) < 1e-12, "measured EP overload \(measured) vs predicted \(predicted)")
        // The prediction is recomputed here from the per-expert counts in the results file.
        let stats = try #require(parallel["routing_stats"] as? [String: Any])
        var maxSum = 0, meanSum = 0.0
        for (key, value) in stats where key.hasPrefix("layer_") {
            let loads = try #require((value as? [String: Any])?["tokens_per_expert_distribution"] as? [Int], "\(key)")
            let half = loads.count / 2
            maxSum += max(loads[..<half].reduce(0, +), loads[half...].reduce(0, +))
            meanSum += Double(loads.reduce(0, +)) / 2
        }
        #expect(
            meanSum > 0 && abs(Double(maxSum) / meanSum - measured) < 1e-12, "Σ max / Σ mean from the counts: \(Double(maxSum) / meanSum)")
    }

    /// `bench` under mpirun: rank 0 alone prints one JSON object, with each rank holding half the experts.
    @Test func benchRunsExpertParallel() throws {
        try MPI.require()
        let r = try MPI.launch(
            2,
            [
                "bench", "--checkpoint", Self.demo.appendingPathComponent("checkpoint/step-800").path,
                "--model-args", Self.demo.appendingPathComponent("model_args.json").path,
                "--batch", "2", "--seq-len", "32", "--decode-tokens", "4", "--iterations", "1",
                "--threads", "1", "--json",
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let lines = r.stdout.split(separator: "\n")
        #expect(lines.count == 1, "one JSON line from rank 0 only: \(r.stdout)")
        let result = try #require(try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: Any])
        #expect((result["prefill_tokens_per_s"] as? Double ?? 0) > 0 && (result["decode_tokens_per_s"] as? Double ?? 0) > 0)
        let ranks = try #require((result["expert_parallel"] as? [String: Any])?["ranks"] as? [[String: Any]])
        #expect(ranks.count == 2)
        #expect(ranks.map { $0["experts"] as? [Int] ?? [] } == [[0, 4], [4, 8]])
        #expect(ranks[0]["expert_weight_bytes"] as? Int == ranks[1]["expert_weight_bytes"] as? Int)
        #expect((ranks[0]["expert_weight_bytes"] as? Int ?? 0) > 0)
    }

    @Test func processCountThatDoesNotDivideTheExpertsIsRefusedBeforeLoading() throws {
        try MPI.require()
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        // The checkpoint does not exist: refusing before loading means the expert count is the complaint.
        let r = try MPI.launch(
            3,
            [
                "forward", "--checkpoint", dir.appendingPathComponent("absent").path,
                "--model-args", variant.appendingPathComponent("model_args.json").path,
                "--tokens-file", variant.appendingPathComponent("tokens.json").path,
                "--output", dir.appendingPathComponent("out.json").path,
            ], timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("expert-parallel degree 3 does not divide num_experts 8"), "\(r.stderr)")
        #expect(!r.stderr.contains("no such file"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.json").path))
    }

    @Test func epThatDoesNotDivideTheProcessCountIsRefused() throws {
        try MPI.require()
        let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")
        let r = try MPI.launch(
            2,
            [
                "forward", "--ep", "4", "--checkpoint", variant.appendingPathComponent("checkpoint").path,
                "--model-args", variant.appendingPathComponent("model_args.json").path,
                "--tokens-file", variant.appendingPathComponent("tokens.json").path,
                "--output", "/dev/null/never",
            ], timeout: 60)
        #expect(r.status != 0)
        #expect(r.stderr.contains("--ep 4 needs a multiple of 4 processes, but this run has 2"), "\(r.stderr)")
    }

    /// 4 processes with --ep 2: two data-parallel replicas of a 2-rank expert group. Each rank holds half the
    /// experts, sequences are split over all 4, and the numbers equal one process's.
    @Test func replicasOfTheExpertGroupMatchOneProcess() throws {
        try MPI.require()
        let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_sigmoid_groups_yarn")
        let (single, parallel, _) = try Self.forwardBoth(
            checkpoint: variant.appendingPathComponent("checkpoint"), modelArgs: variant.appendingPathComponent("model_args.json"),
            tokens: variant.appendingPathComponent("tokens.json"), processes: 4, parallelArguments: ["--ep", "2"])
        let c = try Self.compareForward(single, parallel)
        #expect(c.maxLogitDifference <= Self.logitTolerance, "max |Δlogit| \(c.maxLogitDifference) over \(c.count)")
        #expect(c.sameExperts)

        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        // The config's expert_parallel_degree (2) sets the degree when it divides the 4 processes.
        let config = dir.appendingPathComponent("train.toml")
        let toml = try String(contentsOf: Self.demo.appendingPathComponent("train.toml"), encoding: .utf8)
            .replacingOccurrences(of: "expert_parallel_degree = 1", with: "expert_parallel_degree = 2")
        try Data(toml.utf8).write(to: config)
        let common = [
            "run", "--preset", "1min", "--threads", "1", "--quiet", "--checkpoint",
            Self.demo.appendingPathComponent("checkpoint/step-800").path, "--config", config.path,
            "--model-args", Self.demo.appendingPathComponent("model_args.json").path,
            "--tokenizer", CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path,
        ]
        let one = dir.appendingPathComponent("one"), four = dir.appendingPathComponent("four")
        let a = try CLI.run(common + ["--output-dir", one.path])
        #expect(a.status == 0, "\(a.stderr)")
        let b = try MPI.launch(4, common + ["--output-dir", four.path])
        #expect(b.status == 0, "\(b.stderr)")
        let single2 = try Self.json(
            one.appendingPathComponent(try #require(try FileManager.default.contentsOfDirectory(atPath: one.path).first)))
        let files = try FileManager.default.contentsOfDirectory(atPath: four.path)
        #expect(files.count == 1, "rank 0 alone writes the results file: \(files)")
        let parallel2 = try Self.json(four.appendingPathComponent(try #require(files.first)))
        for key in ["routing_stats", "lm_eval_results"] {
            let x = try #require(single2[key] as? NSDictionary), y = try #require(parallel2[key] as? NSDictionary)
            #expect(x == y, "\(key) differs between one process and mpirun -np 4 --ep 2")
        }
        let ep = try #require((parallel2["moe_eval"] as? [String: Any])?["expert_parallel"] as? [String: Any])
        #expect(ep["degree"] as? Int == 2 && ep["replicas"] as? Int == 2 && ep["processes"] as? Int == 4, "\(ep)")
        let ranks = try #require(ep["ranks"] as? [[String: Any]])
        #expect(ranks.map { $0["experts"] as? [Int] ?? [] } == [[0, 4], [4, 8], [0, 4], [4, 8]])
        #expect(Set(ranks.compactMap { $0["expert_weight_bytes"] as? Int }).count == 1)
        let overload = try #require(ep["overload_factor"] as? [String: Any])
        let measured = try #require(overload["measured"] as? Double), predicted = try #require(overload["predicted"] as? Double)
        #expect(abs(measured - predicted) < 1e-12, "measured EP overload \(measured) vs predicted \(predicted)")
    }

    /// In the two-process FSDP checkpoint rank 1's experts sit in their own chunk of `__1_0.distcp`; with that
    /// chunk damaged, rank 1 cannot load, says which file and tensor, and the whole job ends.
    @Test func rankThatCannotReadItsChunkEndsTheJob() throws {
        try MPI.require()
        let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_two_process_fsdp")
        let dir = try CLI.scratch(copying: variant.appendingPathComponent("checkpoint"))
        defer { CLI.cleanUp(dir) }
        let checkpoint = dir.appendingPathComponent("checkpoint")
        let chunks = try #require(try DCPCheckpoint(directory: checkpoint).chunks(of: "layers.1.moe.experts.w1"))
        let rankOnes = try #require(chunks.first { $0.offsets.first == 4 && $0.sizes.first == 4 }, "\(chunks)")
        #expect(chunks.first { $0.offsets.first == 0 }?.file != rankOnes.file)
        let file = try FileHandle(forWritingTo: checkpoint.appendingPathComponent(rankOnes.file))
        try file.seek(toOffset: UInt64(rankOnes.byteOffset))
        try file.write(contentsOf: Data(repeating: 0, count: 64))
        try file.close()

        let r = try MPI.launch(
            2,
            [
                "forward", "--checkpoint", checkpoint.path,
                "--model-args", variant.appendingPathComponent("model_args.json").path,
                "--tokens-file", variant.appendingPathComponent("tokens.json").path,
                "--output", dir.appendingPathComponent("out.json").path,
            ], timeout: 60)
        #expect(r.status != 0)
        #expect(
            r.stderr.contains("moe-eval rank 1 of 2: error:") && r.stderr.contains(rankOnes.file)
                && r.stderr.contains("layers.1.moe.experts.w1"), "\(r.stderr)")
        #expect(!r.stderr.contains("moe-eval rank 0 of 2: error:"), "rank 0 reads no byte of that chunk: \(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.json").path))
    }

    /// A rank killed mid-run: the others are blocked in a collective, and the launcher ends them.
    @Test func killedRankEndsTheJob() throws {
        try MPI.require()
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        var killed: Int32?
        let r = try MPI.launch(2, ["run", "--preset", "5min", "--threads", "1", "--skip-lm-eval", "--output-dir", dir.path], timeout: 120) {
            mpirun in
            // Rank 1 is a child of mpirun whose environment says OMPI_COMM_WORLD_RANK=1.
            let deadline = Date().addingTimeInterval(60)
            while killed == nil && mpirun.isRunning && Date() < deadline {
                for pid in Self.children(of: mpirun.processIdentifier) where Self.environment(of: pid).contains("OMPI_COMM_WORLD_RANK=1") {
                    usleep(300_000)
                    kill(pid, SIGKILL)
                    killed = pid
                }
                usleep(20_000)
            }
        }
        #expect(killed != nil, "rank 1 was never seen running")
        #expect(r.status != 0)
        #expect(r.stderr.contains("signal 9") || r.stderr.contains("Killed"), "\(r.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }

    static func children(of parent: Int32) -> [Int32] {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { Int32($0) } ?? []
        return pids.filter { pid in
            guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
                let close = stat.lastIndex(of: ")")
            else { return false }
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            return fields.count > 2 && Int32(fields[1]) == parent
        }
    }

    static func environment(of pid: Int32) -> String {
        guard let data = FileManager.default.contents(atPath: "/proc/\(pid)/environ") else { return "" }
        return String(decoding: data.map { $0 == 0 ? 10 : $0 }, as: UTF8.self)
    }
}
