import Foundation
import Testing

/// Runs the real `moe-eval` binary: `MOE_EVAL_BIN`, else the one built beside this test bundle.
enum CLI {
    static var binary: URL {
        if let path = ProcessInfo.processInfo.environment["MOE_EVAL_BIN"] { return URL(fileURLWithPath: path) }
        let runner = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var dir = runner.deletingLastPathComponent()
        while dir.path != "/" {
            let candidate = dir.appendingPathComponent("moe-eval")
            if FileManager.default.isExecutableFile(atPath: candidate.path) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return repoRoot.appendingPathComponent(".build/debug/moe-eval")
    }

    static var repoRoot: URL {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }

    static var dsv3Fixtures: URL { repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/dsv3") }
    static var checkpointFixtures: URL { repoRoot.appendingPathComponent("Tests/MoECheckpointTests/Fixtures") }

    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
        var stderrLines: [String] { stderr.split(separator: "\n").map(String.init) }
    }

    @discardableResult
    static func run(_ arguments: [String], stdin: String? = nil, in directory: URL? = nil) throws -> Result {
        try execute(binary, arguments, stdin: stdin, in: directory)
    }

    /// Runs `executable` to the end with `arguments` (and `environment` instead of this process's, when given).
    static func execute(
        _ executable: URL, _ arguments: [String], environment: [String: String]? = nil,
        stdin: String? = nil, in directory: URL? = nil
    ) throws -> Result {
        let process = Process()
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe(), err = Pipe(), input = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = input
        try process.run()
        if let stdin { input.fileHandleForWriting.write(Data(stdin.utf8)) }
        try input.fileHandleForWriting.close()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return Result(
            status: process.terminationStatus,
            stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }

    /// A scratch folder holding a copy of `source` (if given), removed by `cleanUp`.
    static func scratch(copying source: URL? = nil) throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-eval-cli-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        if let source { try FileManager.default.copyItem(at: source, to: dir.appendingPathComponent(source.lastPathComponent)) }
        return dir
    }

    static func cleanUp(_ dir: URL) { try? FileManager.default.removeItem(at: dir) }
}
