import Foundation
import HubTestSupport
import Testing

@testable import MoEEval

/// `moe-eval run` with benchmark data where lm-eval finds it: a Hugging Face Hub cache, a Hub (on
/// 127.0.0.1), the demo's own slice; and a run whose tasks cannot all run.
@Suite(.serialized) struct HubDataCLITests {
    static let sharedData = CLI.repoRoot.appendingPathComponent("../shared/data").standardized
    static var demo: URL { CLI.repoRoot.appendingPathComponent("assets/demo") }
    /// The demo model copied out of assets/demo, so that the run does not fall back to the demo's own data slice.
    static func demoModel(copiedTo scratch: URL) throws -> [String] {
        let checkpoint = scratch.appendingPathComponent("step-800")
        try FileManager.default.copyItem(at: demo.appendingPathComponent("checkpoint/step-800"), to: checkpoint)
        return [
            "--checkpoint", checkpoint.path,
            "--model-args", demo.appendingPathComponent("model_args.json").path,
            "--tokenizer", CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3").path,
        ]
    }
    static let accuracyRun = ["--lm-eval-only", "--lm-eval-tasks", "hellaswag,arc_easy,mmlu", "--lm-eval-limit", "20", "--quiet"]

    /// An environment with nothing of the developer's: no HF_* variables, HOME in the scratch folder.
    static func environment(_ scratch: URL, _ extra: [String: String]) -> [String: String] {
        var env = [
            "PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "HOME": scratch.appendingPathComponent("home").path,
        ]
        for (key, value) in extra { env[key] = value }
        return env
    }

    static func results(_ folder: URL) throws -> [String: Any] {
        let names = try FileManager.default.contentsOfDirectory(atPath: folder.path).filter { $0.hasSuffix(".json") }
        try #require(names.count == 1, "\(names)")
        return try #require(
            try JSONSerialization.jsonObject(with: Data(contentsOf: folder.appendingPathComponent(names[0]))) as? [String: Any])
    }

    static func json(_ object: [String: Any]) -> [UInt8] {
        Array((try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) + [0x0A])
    }

    /// The original files of ../shared/data as the Hub datasets hold them (their schemas and file paths):
    /// repo → file path → JSON Lines.
    static func hubFiles() throws -> [String: [String: [UInt8]]] {
        var hellaswag: [UInt8] = []
        for line in try String(contentsOf: sharedData.appendingPathComponent("hellaswag/hellaswag_val_subset1000.jsonl"), encoding: .utf8)
            .split(separator: "\n")
        {
            var record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            record["label"] = "\(record["label"]!)"
            hellaswag += json(record)
        }
        var arc: [UInt8] = []
        for line in try String(contentsOf: sharedData.appendingPathComponent("arc/ARC-Easy-Test.jsonl"), encoding: .utf8).split(
            separator: "\n")
        {
            let record = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
            let question = try #require(record["question"] as? [String: Any])
            let choices = try #require(question["choices"] as? [[String: String]])
            arc += json([
                "id": record["id"]!, "question": question["stem"]!, "answerKey": record["answerKey"]!,
                "choices": ["text": choices.map { $0["text"]! }, "label": choices.map { $0["label"]! }],
            ])
        }
        var mmlu: [String: [UInt8]] = [:]
        for subject in MMLU.subjects.map(\.name) {
            let csv = sharedData.appendingPathComponent("mmlu/data/test/\(subject)_test.csv")
            var lines: [UInt8] = []
            for (_, fields) in try TaskData.csvRecords(csv) {
                let answer = try #require(["A", "B", "C", "D"].firstIndex(of: fields[5]))
                lines += json(["question": fields[0], "subject": subject, "choices": Array(fields[1...4]), "answer": answer])
            }
            mmlu["\(subject)/test-00000-of-00001.jsonl"] = lines
        }
        return [
            "Rowan/hellaswag": ["data/validation-00000-of-00001.jsonl": hellaswag],
            "allenai/ai2_arc": ["ARC-Easy/test-00000-of-00001.jsonl": arc],
            "cais/mmlu": mmlu,
        ]
    }

    /// Writes `files` into a Hub cache as huggingface_hub lays it out (blob, relative symlink, refs/main).
    static func writeHubCache(_ files: [String: [String: [UInt8]]], in cache: URL) throws {
        for (repo, paths) in files {
            let folder = cache.appendingPathComponent("datasets--" + repo.replacingOccurrences(of: "/", with: "--"))
            let commit = "1111111111111111111111111111111111111111"
            try FileManager.default.createDirectory(at: folder.appendingPathComponent("refs"), withIntermediateDirectories: true)
            try FileManager.default.createDirectory(at: folder.appendingPathComponent("blobs"), withIntermediateDirectories: true)
            try Data(commit.utf8).write(to: folder.appendingPathComponent("refs/main"))
            for (index, (path, bytes)) in paths.enumerated() {
                try Data(bytes).write(to: folder.appendingPathComponent("blobs/blob\(index)"))
                let link = folder.appendingPathComponent("snapshots/\(commit)/\(path)")
                try FileManager.default.createDirectory(at: link.deletingLastPathComponent(), withIntermediateDirectories: true)
                let up = String(repeating: "../", count: path.split(separator: "/").count + 1)
                try FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: up + "blobs/blob\(index)")
            }
        }
    }

    @Test(
        .enabled(if: FileManager.default.fileExists(atPath: HubDataCLITests.sharedData.path), "needs ../shared/data beside the repository"))
    func hubCacheAndHubDownloadGiveTheSameMetricsAsTheOriginalFiles() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let model = try Self.demoModel(copiedTo: scratch)
        func run(_ name: String, _ arguments: [String], _ env: [String: String]) throws -> [String: Any] {
            let out = scratch.appendingPathComponent(name)
            let r = try CLI.execute(
                CLI.binary, ["run"] + model + Self.accuracyRun + arguments + ["--output-dir", out.path],
                environment: Self.environment(scratch, env))
            #expect(r.status == 0, "\(name): \(r.stderr)")
            return try Self.results(out)
        }
        let original = try run(
            "original", ["--data-dir", Self.sharedData.path],
            ["HF_HOME": scratch.appendingPathComponent("empty").path, "HF_HUB_OFFLINE": "1"])
        let expected = try #require(original["lm_eval_results"] as? [String: [String: Double]])
        #expect(
            expected["mmlu"]?["sample_len"] == 57 * 20 && expected["hellaswag"]?["sample_len"] == 20
                && expected["arc_easy"]?["sample_len"] == 20)

        let files = try Self.hubFiles()
        try Self.writeHubCache(files, in: scratch.appendingPathComponent("hf/hub"))
        let cached = try run("cached", [], ["HF_HOME": scratch.appendingPathComponent("hf").path, "HF_HUB_OFFLINE": "1"])
        #expect(cached["lm_eval_results"] as? [String: [String: Double]] == expected)

        let hub = try LoopbackHub()
        for (repo, paths) in files {
            hub.add(repo: repo, revision: "main", .init(commit: "2222222222222222222222222222222222222222", files: paths))
        }
        let downloadHome = scratch.appendingPathComponent("download")
        let downloaded = try run("downloaded", [], ["HF_HOME": downloadHome.path, "HF_ENDPOINT": hub.endpoint])
        #expect(downloaded["lm_eval_results"] as? [String: [String: Double]] == expected)
        #expect(hub.requests.filter { $0.path.hasPrefix("/cdn/") }.count == 1 + 1 + 57)
        let requestsBefore = hub.requests.count
        let offline = try run("offline", [], ["HF_HOME": downloadHome.path, "HF_ENDPOINT": hub.endpoint, "HF_HUB_OFFLINE": "1"])
        #expect(offline["lm_eval_results"] as? [String: [String: Double]] == expected)
        #expect(hub.requests.count == requestsBefore, "the offline rerun made no request")
    }

    /// The demo's slice is parquet in the Hub's schemas: read through the parquet reader and the Hub-row path, its
    /// 40 HellaSwag and 40 ARC-Easy items score exactly as the same items from the original release files.
    @Test(
        .enabled(if: FileManager.default.fileExists(atPath: HubDataCLITests.sharedData.path), "needs ../shared/data beside the repository"))
    func theDemoParquetSliceScoresAsTheOriginalFiles() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let slice = try FileManager.default.subpathsOfDirectory(atPath: Self.demo.appendingPathComponent("hub").path)
        #expect(slice.filter { $0.hasSuffix(".parquet") }.count == 2, "\(slice)")
        func run(_ name: String, _ arguments: [String]) throws -> [String: [String: Double]] {
            let out = scratch.appendingPathComponent(name)
            let r = try CLI.execute(
                CLI.binary,
                [
                    "run", "--lm-eval-only", "--tasks", "hellaswag,arc_easy", "--limit", "40", "--quiet",
                    "--output-dir", out.path,
                ] + arguments,
                environment: Self.environment(
                    scratch,
                    [
                        "HF_HOME": scratch.appendingPathComponent("empty").path,
                        "HF_HUB_OFFLINE": "1",
                    ]))
            #expect(r.status == 0, "\(name): \(r.stderr)")
            return try #require(try Self.results(out)["lm_eval_results"] as? [String: [String: Double]])
        }
        let fromSlice = try run("slice", [])
        let fromOriginals = try run("original", ["--data-dir", Self.sharedData.path])
        #expect(fromSlice["hellaswag"]?["sample_len"] == 40 && fromSlice["arc_easy"]?["sample_len"] == 40)
        #expect(fromSlice == fromOriginals)
    }

    @Test func theDemoRunsFromACopyWithNothingBesideIt() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let copy = scratch.appendingPathComponent("moe-eval-copy")
        try FileManager.default.createDirectory(at: copy, withIntermediateDirectories: true)
        try FileManager.default.copyItem(at: CLI.repoRoot.appendingPathComponent("assets"), to: copy.appendingPathComponent("assets"))
        try FileManager.default.copyItem(at: CLI.binary, to: copy.appendingPathComponent("moe-eval"))
        #expect(!FileManager.default.fileExists(atPath: scratch.appendingPathComponent("shared").path))
        let out = scratch.appendingPathComponent("out")
        let r = try CLI.execute(
            copy.appendingPathComponent("moe-eval"), ["run", "--preset", "1min", "--output-dir", out.path, "--quiet"],
            environment: Self.environment(scratch, ["HF_HOME": scratch.appendingPathComponent("hf").path, "HF_HUB_OFFLINE": "1"]),
            in: copy)
        #expect(r.status == 0, "\(r.stderr)")
        let json = try Self.results(out)
        let hellaswag = try #require((json["lm_eval_results"] as? [String: [String: Double]])?["hellaswag"])
        #expect(hellaswag["sample_len"] == 5 && hellaswag["acc,none"] != nil && hellaswag["acc_norm,none"] != nil)
        #expect(json["lm_eval_errors"] == nil)
    }

    @Test func contextsLongerThanTheModelsAreCutOnTheLeft() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let long = Array(repeating: "The man keeps talking about the weather and the river and the town.", count: 60).joined(separator: " ")
        var rows: [UInt8] = []
        for label in ["0", "2"] {
            rows += Self.json([
                "activity_label": "Talking", "ctx_a": long, "ctx_b": "then he", "label": label,
                "endings": ["stops.", "sings a song.", "walks home.", "sits down."],
            ])
        }
        try Self.writeHubCache(
            ["Rowan/hellaswag": ["data/validation-00000-of-00001.jsonl": rows]], in: scratch.appendingPathComponent("hf/hub"))
        let model = try Self.demoModel(copiedTo: scratch)
        func run(_ name: String, _ extra: [String]) throws -> [String: Double] {
            let out = scratch.appendingPathComponent(name)
            let r = try CLI.execute(
                CLI.binary,
                ["run"] + model + ["--lm-eval-only", "--lm-eval-tasks", "hellaswag", "--quiet", "--output-dir", out.path] + extra,
                environment: Self.environment(scratch, ["HF_HOME": scratch.appendingPathComponent("hf").path, "HF_HUB_OFFLINE": "1"]))
            #expect(r.status == 0, "\(name): \(r.stderr)")
            return try #require((try Self.results(out)["lm_eval_results"] as? [String: [String: Double]])?["hellaswag"])
        }
        // The demo's context is 256 tokens; each prompt here is over 700.
        let byDefault = try run("default", [])
        #expect(byDefault["sample_len"] == 2)
        #expect(byDefault == (try run("explicit", ["--max-length", "256"])))
    }

    @Test func tasksThatCannotRunAreRecordedAndTheRestIsKept() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        // A user's cache with a malformed winogrande file; no piqa anywhere; hellaswag from the demo's slice.
        let bad = ["allenai/winogrande": ["winogrande_xl/validation-00000-of-00001.jsonl": Array("{\"sentence\": \n".utf8)]]
        try Self.writeHubCache(bad, in: scratch.appendingPathComponent("hf/hub"))
        let out = scratch.appendingPathComponent("out")
        let r = try CLI.execute(
            CLI.binary,
            [
                "run", "--preset", "30s", "--lm-eval-tasks", "hellaswag,winogrande,piqa", "--lm-eval-limit", "3",
                "--output-dir", out.path, "--quiet",
            ],
            environment: Self.environment(
                scratch,
                [
                    "HF_HOME": scratch.appendingPathComponent("hf").path, "HF_HUB_OFFLINE": "1",
                    "MOE_EVAL_HOME": CLI.repoRoot.path,
                ]))
        #expect(r.status == 3, "\(r.stderr)")
        let json = try Self.results(out)
        #expect((json["routing_stats"] as? [String: Any])?["aggregate"] != nil)
        #expect((json["computational_cost"] as? [String: Any])?["num_flops_per_token"] != nil)
        #expect((json["lm_eval_results"] as? [String: [String: Double]])?["hellaswag"]?["sample_len"] == 3)
        let errors = try #require(json["lm_eval_errors"] as? [String: String])
        #expect(Set(errors.keys) == ["winogrande", "piqa"])
        let winogrande = errors["winogrande"] ?? "", piqa = errors["piqa"] ?? ""
        #expect(
            winogrande.contains("snapshots/1111111111111111111111111111111111111111/winogrande_xl/validation-00000-of-00001.jsonl: line 1"),
            "\(winogrande)")
        #expect(
            piqa.contains("baber/piqa split validation") && piqa.contains("HF_HUB_OFFLINE") && piqa.contains("datasets--baber--piqa"),
            "\(piqa)")
        #expect(!piqa.contains("\n") && !winogrande.contains("\n"))
        #expect(r.stderr.contains("benchmark task piqa did not run: ") && r.stderr.contains("benchmark task winogrande did not run: "))
    }
}
