import Foundation
import Testing

@testable import MoECore

#if canImport(Glibc)
import Glibc
#endif

@Suite struct AtomicFileTests {
    func scratch() throws -> URL {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("moe-core-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        return dir
    }

    func names(_ dir: URL) throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
    }

    @Test func refuseKeepsTheExistingFile() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("out.json")
        try AtomicFile.write(Data("first".utf8), to: target, existing: .refuse)
        #expect(throws: AtomicFileError.self) { try AtomicFile.write(Data("second".utf8), to: target, existing: .refuse) }
        #expect(try String(contentsOf: target, encoding: .utf8) == "first")
        #expect(try names(dir) == ["out.json"])
    }

    @Test func replaceReplaces() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("out.json")
        try AtomicFile.write(Data("first".utf8), to: target, existing: .refuse)
        try AtomicFile.write(Data("second".utf8), to: target, existing: .replace)
        #expect(try String(contentsOf: target, encoding: .utf8) == "second")
        #expect(try names(dir) == ["out.json"])
    }

    @Test func nextFreeNameTakesTheNextSuffixAndTellsTheContents() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("eval_results_1.json")
        try Data("taken".utf8).write(to: target)
        try Data("taken".utf8).write(to: dir.appendingPathComponent("eval_results_1_2.json"))
        let written = try AtomicFile.write(to: target, existing: .nextFreeName) { final, output in
            try output.write(Data(final.lastPathComponent.utf8))
        }
        #expect(written.lastPathComponent == "eval_results_1_3.json")
        #expect(try String(contentsOf: written, encoding: .utf8) == "eval_results_1_3.json")
        #expect(try String(contentsOf: target, encoding: .utf8) == "taken")
        #expect(try names(dir) == ["eval_results_1.json", "eval_results_1_2.json", "eval_results_1_3.json"])
    }

    /// Many writers racing for one name: each publishes its own file and none replaces another.
    @Test func concurrentWritersNeverReplaceEachOther() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        let target = dir.appendingPathComponent("r.json")
        let writers = 16
        final class Published: @unchecked Sendable {
            let lock = NSLock()
            var count = 0
            func add() { lock.lock(); count += 1; lock.unlock() }
        }
        let published = Published()
        DispatchQueue.concurrentPerform(iterations: writers) { i in
            if (try? AtomicFile.write(Data("writer \(i)".utf8), to: target, existing: .nextFreeName)) != nil { published.add() }
        }
        #expect(published.count == writers)
        let files = try names(dir)
        #expect(files.count == writers, "\(files)")
        #expect(!files.contains { $0.hasPrefix(".") })
        let contents = Set(try files.map { try String(contentsOf: dir.appendingPathComponent($0), encoding: .utf8) })
        #expect(contents == Set((0..<writers).map { "writer \($0)" }))
    }

    @Test func aFailingWriterLeavesNothing() throws {
        struct Stop: Error {}
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        #expect(throws: Stop.self) {
            try AtomicFile.write(to: dir.appendingPathComponent("x.bin"), existing: .refuse) { _, output in
                try output.write(Data(count: 100))
                throw Stop()
            }
        }
        #expect(try names(dir).isEmpty)
    }

    @Test func missingFolderIsNamed() throws {
        let target = URL(fileURLWithPath: "/nonexistent-\(UUID().uuidString)/out.json")
        let error = try #require(throws: AtomicFileError.self) { try AtomicFile.write(Data(), to: target, existing: .refuse) }
        #expect(error.description.contains(target.deletingLastPathComponent().path))
    }

    func run(_ tool: String, _ arguments: [String]) -> Int32 {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return -1 }
        process.waitUntilExit()
        return process.terminationStatus
    }

    @Test func numberedNames() {
        let folder = URL(fileURLWithPath: "/x")
        #expect(AtomicFile.numbered(folder.appendingPathComponent("a.json"), 2).lastPathComponent == "a_2.json")
        #expect(AtomicFile.numbered(folder.appendingPathComponent("a.tar.gz"), 3).lastPathComponent == "a.tar_3.gz")
        #expect(AtomicFile.numbered(folder.appendingPathComponent("plain"), 2).lastPathComponent == "plain_2")
        #expect(AtomicFile.numbered(folder.appendingPathComponent(".hidden"), 2).lastPathComponent == ".hidden_2")
    }

    /// A full disk: a 64 KiB tmpfs takes the first 40 KB and refuses the next 100 KB; the partial temporary file
    /// is removed and the error says why. Needs root to mount (skipped with the reason otherwise).
    @Test func fullDiskLeavesNoTemporaryFile() throws {
        let dir = try scratch()
        defer { try? FileManager.default.removeItem(at: dir) }
        guard getuid() == 0, run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", dir.path]) == 0 else {
            print("skipped fullDiskLeavesNoTemporaryFile: cannot mount a tmpfs here (needs root and mount permission)")
            return
        }
        defer { _ = run("/bin/umount", [dir.path]) }
        try AtomicFile.write(Data(count: 40_000), to: dir.appendingPathComponent("fits.bin"), existing: .refuse)
        let error = try #require(throws: AtomicFileError.self) {
            try AtomicFile.write(Data(count: 100_000), to: dir.appendingPathComponent("too-big.bin"), existing: .refuse)
        }
        #expect(error.description.contains("No space left on device"), "\(error)")
        #expect(error.description.contains("too-big.bin"))
        #expect(try names(dir) == ["fits.bin"])
    }
}
