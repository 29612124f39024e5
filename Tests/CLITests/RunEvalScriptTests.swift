import Foundation
import Testing

/// `scripts/run_eval_moe.sh`: the seed's environment variables reach `moe-eval run` as the matching flags.
/// The script runs the test build's binary through `MOE_EVAL_BIN` (building a release binary would take minutes).
@Suite struct RunEvalScriptTests {
    static let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")

    static func script(_ environment: [String: String], arguments: [String] = []) throws -> CLI.Result {
        var env = ProcessInfo.processInfo.environment
        for key in [
            "CHECKPOINT_DIR", "CONFIG_FILE", "OUTPUT_DIR", "PRESET", "SKIP_LM_EVAL", "LM_EVAL_ONLY", "LM_EVAL_TASKS",
            "LM_EVAL_LIMIT", "SEED", "NGPU", "MODULE", "CONFIG", "SEQ_LEN", "MOE_EVAL_REBUILD",
        ] { env[key] = nil }
        env["MOE_EVAL_BIN"] = CLI.binary.path
        for (key, value) in environment { env[key] = value }
        return try CLI.execute(
            URL(fileURLWithPath: "/bin/bash"),
            [CLI.repoRoot.appendingPathComponent("scripts/run_eval_moe.sh").path] + arguments, environment: env)
    }

    /// The fixture has no train config or tokenizer: model args and random routing input go through as arguments.
    static let fixtureArguments = [
        "--model-args", variant.appendingPathComponent("model_args.json").path, "--routing-input", "random", "--quiet",
    ]

    static func onlyResults(in folder: URL) throws -> [String: Any] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter {
            $0.hasPrefix("eval_results_") && $0.hasSuffix(".json")
        }
        #expect(names.count == 1, "\(names)")
        let data = try Data(contentsOf: folder.appendingPathComponent(try #require(names.first)))
        return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    }

    @Test func variablesBecomeFlags() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let output = dir.appendingPathComponent("eval")
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": Self.variant.appendingPathComponent("checkpoint").path, "OUTPUT_DIR": output.path,
                "PRESET": "30s", "SEED": "7", "SKIP_LM_EVAL": "1", "NGPU": "0",
            ], arguments: Self.fixtureArguments)
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.onlyResults(in: output)
        let record = try #require(results["moe_eval"] as? [String: Any])
        #expect(record["preset"] as? String == "30s")
        #expect(record["seed"] as? Int == 7)
        #expect((record["lm_eval"] as? [String: Any])?["reason"] as? String == "--skip-lm-eval")
        #expect((record["routing_input"] as? [String: Any])?["kind"] as? String == "random")
        #expect(results["checkpoint_dir"] as? String == Self.variant.appendingPathComponent("checkpoint").path)
        #expect(r.stdout.contains("results written to \(output.path)"))
    }

    @Test func configTasksAndLimitArrive() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        // Without OUTPUT_DIR the results go to {dump_folder}/eval from CONFIG_FILE, as in the seed.
        let dump = dir.appendingPathComponent("outputs")
        let config = dir.appendingPathComponent("train.toml")
        try Data(
            """
            [job]
            dump_folder = "\(dump.path)"
            [model]
            name = "deepseek_v3"
            flavor = "debugmodel"
            [parallelism]
            expert_parallel_degree = 2
            """.utf8
        ).write(to: config)
        // The tasks really run, so this uses the demo model, whose vocabulary fits the demo tokenizer.
        let demo = CLI.repoRoot.appendingPathComponent("assets/demo")
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": demo.appendingPathComponent("checkpoint/step-800").path, "CONFIG_FILE": config.path,
                "PRESET": "30s", "LM_EVAL_TASKS": "hellaswag arc_easy", "LM_EVAL_LIMIT": "3",
            ],
            arguments: [
                "--model-args", demo.appendingPathComponent("model_args.json").path,
                "--tokenizer", CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path,
            ])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.onlyResults(in: dump.appendingPathComponent("eval"))
        let record = try #require(results["moe_eval"] as? [String: Any])
        #expect(record["seed"] as? Int == 1337)
        let lmEval = try #require(record["lm_eval"] as? [String: Any])
        #expect(lmEval["tasks"] as? [String] == ["hellaswag", "arc_easy"])
        #expect(lmEval["limit"] as? Int == 3 && lmEval["status"] as? String == "ran")
        let accuracy = try #require(results["lm_eval_results"] as? [String: [String: Any]])
        #expect(accuracy["hellaswag"]?["sample_len"] as? Int == 3 && accuracy["arc_easy"]?["acc,none"] != nil)
        let aggregate = (results["routing_stats"] as? [String: Any])?["aggregate"] as? [String: Any]
        #expect(aggregate?["ep_degree"] as? Int == 2)
    }

    @Test func lmEvalOnlySkipsRouting() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": Self.variant.appendingPathComponent("checkpoint").path, "OUTPUT_DIR": dir.path,
                "PRESET": "30s", "LM_EVAL_ONLY": "1",
            ], arguments: Self.fixtureArguments)
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.onlyResults(in: dir)
        #expect((results["routing_stats"] as? [String: Any])?.isEmpty == true)
    }

    /// Without MOE_EVAL_BIN the script builds the release product once and reuses it: it rebuilds only when the
    /// binary is missing, a source is newer, or MOE_EVAL_REBUILD=1. The script runs from a copy in a stand-in
    /// checkout (Sources/, Package.swift, Package.resolved); a stand-in `swift` on PATH records its arguments and
    /// "builds" by writing a launcher for the test build's binary.
    @Test func buildsOnceAndReusesTheReleaseBinary() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let fm = FileManager.default
        let root = dir.appendingPathComponent("checkout"), tools = dir.appendingPathComponent("tools")
        for folder in ["scripts", "Sources/moe-eval"] {
            try fm.createDirectory(at: root.appendingPathComponent(folder), withIntermediateDirectories: true)
        }
        try fm.createDirectory(at: tools, withIntermediateDirectories: true)
        try fm.copyItem(
            at: CLI.repoRoot.appendingPathComponent("scripts/run_eval_moe.sh"), to: root.appendingPathComponent("scripts/run_eval_moe.sh"))
        let source = root.appendingPathComponent("Sources/moe-eval/main.swift")
        for file in [source, root.appendingPathComponent("Package.swift"), root.appendingPathComponent("Package.resolved")] {
            try Data("// stand-in\n".utf8).write(to: file)
            try fm.setAttributes([.modificationDate: Date().addingTimeInterval(-600)], ofItemAtPath: file.path)
        }
        let log = dir.appendingPathComponent("swift.log")
        let release = root.appendingPathComponent(".build/release")
        let fake = tools.appendingPathComponent("swift")
        try Data(
            """
            #!/bin/sh
            echo "$*" >> "\(log.path)"
            case "$*" in
              *--show-bin-path*) echo "\(release.path)" ;;
              *) mkdir -p "\(release.path)" && printf '#!/bin/sh\\nexec "%s" "$@"\\n' "\(CLI.binary.path)" > "\(release.path)/moe-eval" && chmod +x "\(release.path)/moe-eval" ;;
            esac
            """.utf8
        ).write(to: fake)
        try fm.setAttributes([.posixPermissions: 0o755], ofItemAtPath: fake.path)

        func evaluate(_ extra: [String: String] = [:]) throws -> [Substring] {
            let output = dir.appendingPathComponent("eval-\(UUID().uuidString)")
            var environment = [
                "CHECKPOINT_DIR": Self.variant.appendingPathComponent("checkpoint").path, "OUTPUT_DIR": output.path,
                "PRESET": "30s", "PATH": tools.path + ":" + (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"),
            ]
            environment["MOE_EVAL_BIN"] = ""
            for (key, value) in extra { environment[key] = value }
            var env = ProcessInfo.processInfo.environment
            for key in [
                "CHECKPOINT_DIR", "CONFIG_FILE", "OUTPUT_DIR", "PRESET", "SKIP_LM_EVAL", "LM_EVAL_ONLY", "LM_EVAL_TASKS",
                "LM_EVAL_LIMIT", "SEED", "NGPU", "MODULE", "CONFIG", "SEQ_LEN", "MOE_EVAL_REBUILD",
            ] { env[key] = nil }
            for (key, value) in environment { env[key] = value }
            let r = try CLI.execute(
                URL(fileURLWithPath: "/bin/bash"), [root.appendingPathComponent("scripts/run_eval_moe.sh").path] + Self.fixtureArguments,
                environment: env)
            #expect(r.status == 0, "\(r.stderr)")
            #expect((try Self.onlyResults(in: output)["moe_eval"] as? [String: Any])?["preset"] as? String == "30s")
            let calls = ((try? String(contentsOf: log, encoding: .utf8)) ?? "").split(separator: "\n")
            try? fm.removeItem(at: log)
            return calls
        }
        let build: [Substring] = ["build -c release --product moe-eval", "build -c release --show-bin-path"]
        #expect(try evaluate() == build, "first call: no binary yet")
        #expect(try evaluate() == [], "second call reuses the binary")
        // An edit after the last build: the binary is now older than the source.
        try fm.setAttributes(
            [.modificationDate: Date().addingTimeInterval(-900)], ofItemAtPath: release.appendingPathComponent("moe-eval").path)
        #expect(try evaluate() == build, "a source newer than the binary rebuilds")
        #expect(try evaluate() == [], "and the rebuilt binary is reused")
        #expect(try evaluate(["MOE_EVAL_REBUILD": "1"]) == build)
    }

    /// MODULE/CONFIG (TorchTitan 0.3 registry) and SEQ_LEN reach `moe-eval run` as --module/--config/--training.seq_len.
    @Test func moduleConfigAndSeqLenArrive() throws {
        let (dir, checkpoint, _) = try RegistryConfigCLITests.prepare()
        defer { CLI.cleanUp(dir) }
        let output = dir.appendingPathComponent("eval")
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": checkpoint.path, "OUTPUT_DIR": output.path, "PRESET": "30s",
                "MODULE": "deepseek_v3", "CONFIG": "deepseek_v3_debugmodel", "SEQ_LEN": "512",
            ],
            arguments: ["--routing-input", "random", "--quiet"])
        #expect(r.status == 0, "\(r.stderr)")
        let results = try Self.onlyResults(in: output)
        let config = try #require(results["config"] as? [String: Any])
        #expect(
            config["config"] as? String == "deepseek_v3_debugmodel" && (config["training"] as? [String: Any])?["seq_len"] as? Int == 512)
        #expect((results["model_args"] as? [String: Any])?["max_seq_len"] as? Int == 512)
        let both = try Self.script(["CHECKPOINT_DIR": checkpoint.path, "CONFIG": "deepseek_v3_debugmodel", "CONFIG_FILE": "train.toml"])
        #expect(both.status == 2 && both.stderr.contains("not both"))
    }

    /// NGPU=N runs `mpirun -np N` (expert parallelism): one results file, written by rank 0, with N ranks.
    @Test(.enabled(if: MPI.enabled, MPI.skipReason)) func moreThanOneProcessRunsUnderMPI() throws {
        try MPI.require()
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": Self.variant.appendingPathComponent("checkpoint").path,
                "OUTPUT_DIR": dir.path, "PRESET": "30s", "NGPU": "2",
                "MPIRUN_ARGS": "--oversubscribe",
            ], arguments: Self.fixtureArguments + ["--threads", "1"])
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("mpirun -np 2 --oversubscribe"), "\(r.stderr)")
        let ranks = (try Self.onlyResults(in: dir)["moe_eval"] as? [String: Any]).flatMap {
            ($0["expert_parallel"] as? [String: Any])?["ranks"] as? [Any]
        }
        #expect(ranks?.count == 2)
    }

    @Test func badPresetFailsInMoeEval() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let r = try Self.script(
            [
                "CHECKPOINT_DIR": Self.variant.appendingPathComponent("checkpoint").path,
                "OUTPUT_DIR": dir.path, "PRESET": "2min",
            ], arguments: Self.fixtureArguments)
        #expect(r.status != 0)
        #expect(r.stderr.contains("unknown preset \"2min\""))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).isEmpty)
    }
}
