import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// Results files under concurrency and interruption: runs started together each publish their own complete file
/// under its own name, say only that name, and an interrupted run leaves no temporary file.
@Suite(.serialized) struct AtomicResultsCLITests {
    static let variant = CLI.dsv3Fixtures.appendingPathComponent("v022_softmax_basic")

    static func runArguments(into folder: URL) -> [String] {
        [
            "run", "--checkpoint", variant.appendingPathComponent("checkpoint").path,
            "--model-args", variant.appendingPathComponent("model_args.json").path,
            "--preset", "30s", "--routing-input", "random", "--output-dir", folder.path, "--quiet",
        ]
    }

    /// Starts `moe-eval` without waiting; stdout and stderr go to files in `logs`.
    static func start(_ arguments: [String], environment: [String: String] = [:], logs: URL, name: String) throws -> Process {
        let process = Process()
        process.executableURL = CLI.binary
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        FileManager.default.createFile(atPath: logs.appendingPathComponent("\(name).out").path, contents: nil)
        FileManager.default.createFile(atPath: logs.appendingPathComponent("\(name).err").path, contents: nil)
        process.standardOutput = try FileHandle(forWritingTo: logs.appendingPathComponent("\(name).out"))
        process.standardError = try FileHandle(forWritingTo: logs.appendingPathComponent("\(name).err"))
        try process.run()
        return process
    }

    static func log(_ logs: URL, _ name: String) -> String {
        (try? String(contentsOf: logs.appendingPathComponent(name), encoding: .utf8)) ?? ""
    }

    /// The three runs share one second, so they want the same name; the hold makes each of them publish while the
    /// others are ready too, the moment the old code lost files.
    @Test func threeRunsStartedTogetherLeaveThreeCompleteFiles() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let out = scratch.appendingPathComponent("eval"), logs = scratch.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let processes = try (0..<3).map { i in
            try Self.start(
                Self.runArguments(into: out), environment: ["MOE_EVAL_TEST_HOLD_BEFORE_PUBLISH_SECONDS": "0.5"],
                logs: logs, name: "run\(i)")
        }
        processes.forEach { $0.waitUntilExit() }
        for (i, process) in processes.enumerated() {
            #expect(process.terminationStatus == 0, "run \(i): \(Self.log(logs, "run\(i).err"))")
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        #expect(names.count == 3, "\(names)")
        #expect(names.allSatisfy { $0.hasPrefix("eval_results_") && $0.hasSuffix(".json") }, "\(names)")
        // Each run names the file it created, and that file records its own path.
        let announced = (0..<3).map { Self.log(logs, "run\($0).out").trimmingCharacters(in: .whitespacesAndNewlines) }
        #expect(Set(announced) == Set(names.map { "results written to \(out.appendingPathComponent($0).path)" }), "\(announced)")
        for name in names {
            let url = out.appendingPathComponent(name)
            let json = try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any]
            #expect(json?["output_file"] as? String == url.path)
            #expect(json?["routing_stats"] != nil)
        }
    }

    @Test(arguments: [SIGTERM, SIGINT])
    func signalWhileWritingLeavesNoTemporaryFile(signal: Int32) throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let out = scratch.appendingPathComponent("eval"), logs = scratch.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let process = try Self.start(
            Self.runArguments(into: out), environment: ["MOE_EVAL_TEST_HOLD_BEFORE_PUBLISH_SECONDS": "60"],
            logs: logs, name: "run")
        // The temporary file exists (written and fsynced) while the run holds before publishing it.
        let deadline = Date().addingTimeInterval(300)
        var temporary: [String] = []
        while process.isRunning && Date() < deadline {
            temporary = (try? FileManager.default.contentsOfDirectory(atPath: out.path))?.filter { $0.contains(".tmp-") } ?? []
            if !temporary.isEmpty { break }
            usleep(50_000)
        }
        try #require(!temporary.isEmpty, "no temporary file appeared: \(Self.log(logs, "run.err"))")
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal)
        #expect(process.terminationStatus == signal)
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).isEmpty)
        #expect(!Self.log(logs, "run.out").contains("results written"))
    }

    /// convert writes shards into a staging folder beside --output; SIGTERM while a shard waits to be published
    /// removes the folder and everything in it.
    @Test func signalDuringConvertRemovesTheStagingFolder() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let parent = scratch.appendingPathComponent("converted"), logs = scratch.appendingPathComponent("logs")
        try FileManager.default.createDirectory(at: parent, withIntermediateDirectories: true)
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        let arguments = [
            "convert", "--checkpoint", Self.variant.appendingPathComponent("checkpoint").path,
            "--model-args", Self.variant.appendingPathComponent("model_args.json").path,
            "--output", parent.appendingPathComponent("hf").path, "--quiet", "--max-shard-size", "20KB",
        ]
        let process = try Self.start(
            arguments, environment: ["MOE_EVAL_TEST_HOLD_BEFORE_PUBLISH_SECONDS": "60"],
            logs: logs, name: "convert")
        let deadline = Date().addingTimeInterval(300)
        var staged: [String] = []
        while process.isRunning && Date() < deadline {
            let folders = (try? FileManager.default.contentsOfDirectory(atPath: parent.path)) ?? []
            staged = folders.flatMap { folder in
                ((try? FileManager.default.contentsOfDirectory(atPath: parent.appendingPathComponent(folder).path)) ?? [])
                    .filter { $0.contains(".tmp-") }
            }
            if !staged.isEmpty { break }
            usleep(50_000)
        }
        try #require(!staged.isEmpty, "no staged shard appeared: \(Self.log(logs, "convert.err"))")
        kill(process.processIdentifier, SIGTERM)
        process.waitUntilExit()
        #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGTERM)
        #expect(try FileManager.default.contentsOfDirectory(atPath: parent.path).isEmpty)
    }
}
