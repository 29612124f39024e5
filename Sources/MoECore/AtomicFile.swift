import CTempFiles
import Foundation

#if canImport(Glibc)
import Glibc
private let posixWrite = Glibc.write
#elseif canImport(Darwin)
import Darwin
private let posixWrite = Darwin.write
#endif

/// Every output file of moe-eval is written here: whole or not at all, never replacing a file another process
/// published unless the caller asks for that, and with no temporary file left after an error, a full disk or
/// SIGINT/SIGTERM/SIGHUP.
///
/// The bytes go to a temporary file beside the target (created with O_EXCL), are fsynced, and the finished file
/// is then published under its final name in one step that fails if the name is taken (renameat2 with
/// RENAME_NOREPLACE, else link(2), else an O_EXCL claim of the name that the rename then replaces).
public enum AtomicFile {
    /// What to do when the final name already exists when the file is published.
    public enum Existing: Sendable {
        /// Fail with `AtomicFileError.alreadyExists`.
        case refuse
        /// Replace it (rename(2)).
        case replace
        /// Take `NAME_2.EXT`, `NAME_3.EXT`… instead: the first free name at the moment of publishing.
        case nextFreeName
    }

    public typealias Sink = (UnsafeRawBufferPointer) throws -> Void

    /// Where `contents` writes the file's bytes.
    public struct Output {
        fileprivate let descriptor: Int32
        fileprivate let fail: (String) -> AtomicFileError

        public func write(_ chunk: UnsafeRawBufferPointer) throws {
            guard let base = chunk.baseAddress else { return }
            var done = 0
            while done < chunk.count {
                let n = posixWrite(descriptor, base + done, chunk.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw fail("write failed")
                }
                done += n
            }
        }

        public func write(_ data: Data) throws {
            try data.withUnsafeBytes { try write($0) }
        }
    }

    /// Test hook: seconds to wait between the fsync of the temporary file and its publishing, so that a test can
    /// deliver a signal while a temporary file exists. Unset in normal use.
    static let holdBeforePublishVariable = "MOE_EVAL_TEST_HOLD_BEFORE_PUBLISH_SECONDS"

    /// Writes the file and returns the URL it was published under (differs from `url` only with `.nextFreeName`).
    /// `contents` receives that final URL (results files record their own path) and may be called again with the
    /// next name when the first one was taken in the meantime.
    @discardableResult
    public static func write(
        to url: URL, existing: Existing,
        contents: (_ finalURL: URL, _ output: Output) throws -> Void
    ) throws -> URL {
        let folder = url.deletingLastPathComponent()
        var isFolder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: folder.path, isDirectory: &isFolder), isFolder.boolValue else {
            throw AtomicFileError(path: url.path, reason: "folder \(folder.path) does not exist")
        }
        if existing == .refuse && FileManager.default.fileExists(atPath: url.path) {
            throw AtomicFileError(path: url.path, reason: "already exists", alreadyExists: true)
        }
        let maximumNumber = 10_000
        var number = 1
        while number <= maximumNumber {
            var candidate = number == 1 ? url : numbered(url, number)
            // Names already taken are skipped before writing; the publish step still settles races.
            while existing == .nextFreeName && number < maximumNumber && FileManager.default.fileExists(atPath: candidate.path) {
                number += 1
                candidate = numbered(url, number)
            }
            let temporary = try TemporaryFile(beside: candidate)
            defer { temporary.remove() }
            try temporary.fill { output in try contents(candidate, output) }
            holdForTests()
            switch try temporary.publish(as: candidate, replacing: existing == .replace) {
            case .published:
                syncFolder(folder)
                return candidate
            case .nameTaken:
                if existing == .refuse { throw AtomicFileError(path: url.path, reason: "already exists", alreadyExists: true) }
                number += 1
            }
        }
        throw AtomicFileError(path: url.path, reason: "\(maximumNumber) numbered names beside it are all taken")
    }

    /// Writes `data`; see `write(to:existing:contents:)`.
    @discardableResult
    public static func write(_ data: Data, to url: URL, existing: Existing) throws -> URL {
        try write(to: url, existing: existing) { _, output in try output.write(data) }
    }

    /// `name_N.ext` (or `name_N` without an extension).
    static func numbered(_ url: URL, _ n: Int) -> URL {
        let name = url.lastPathComponent
        let folder = url.deletingLastPathComponent()
        if let dot = name.lastIndex(of: "."), dot != name.startIndex {
            return folder.appendingPathComponent("\(name[..<dot])_\(n)\(name[dot...])")
        }
        return folder.appendingPathComponent("\(name)_\(n)")
    }

    static func holdForTests() {
        guard let text = getenv(holdBeforePublishVariable).map({ String(cString: $0) }),
            let seconds = Double(text), seconds > 0, seconds <= 600
        else { return }
        usleep(UInt32(seconds * 1_000_000))
    }

    /// Makes the new directory entry durable too (best effort: some file systems refuse fsync on folders).
    static func syncFolder(_ folder: URL) {
        let fd = open(folder.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if fd >= 0 { _ = fsync(fd); close(fd) }
    }
}

public struct AtomicFileError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    /// The target exists and the caller asked not to replace it.
    public let alreadyExists: Bool

    init(path: String, reason: String, alreadyExists: Bool = false) {
        self.path = path
        self.reason = reason
        self.alreadyExists = alreadyExists
    }

    public var description: String { "cannot write \(path): \(reason)" }
}

/// A path the signal handlers remove if the process is interrupted before `release()`.
public final class InterruptCleanup {
    private var slot: Int32

    /// `isFolder`: a flat folder whose files are removed, then the folder.
    public init(path: String, isFolder: Bool) {
        slot = moe_temp_register(path, isFolder ? 1 : 0)
    }

    public func release() {
        moe_temp_unregister(slot)
        slot = -1
    }

    deinit { release() }
}

/// A temporary file beside its target, removed unless published.
private final class TemporaryFile {
    enum Outcome { case published, nameTaken }

    let path: String
    let target: String
    let cleanup: InterruptCleanup
    var exists = true

    init(beside target: URL) throws {
        self.target = target.path
        let folder = target.deletingLastPathComponent()
        for _ in 0..<100 {
            let candidate = folder.appendingPathComponent(
                ".\(target.lastPathComponent).tmp-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            ).path
            let cleanup = InterruptCleanup(path: candidate, isFolder: false)
            let fd = open(candidate, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 {
                close(fd)
                self.path = candidate
                self.cleanup = cleanup
                return
            }
            let reason = errno
            cleanup.release()
            if reason != EEXIST {
                throw AtomicFileError(
                    path: target.path, reason: "cannot create a temporary file in \(folder.path) (\(String(cString: strerror(reason))))")
            }
        }
        throw AtomicFileError(path: target.path, reason: "cannot find a free temporary name in \(folder.path)")
    }

    /// Truncates and writes the file, then fsyncs it; a failed write (a full disk) removes it.
    func fill(_ body: (AtomicFile.Output) throws -> Void) throws {
        let fd = open(path, O_WRONLY | O_TRUNC | O_CLOEXEC)
        guard fd >= 0 else { throw failure("cannot open the temporary file \(path)") }
        var isOpen = true
        defer { if isOpen { close(fd) } }
        try body(AtomicFile.Output(descriptor: fd, fail: { self.failure($0) }))
        guard fsync(fd) == 0 else { throw failure("fsync failed") }
        isOpen = false
        guard close(fd) == 0 else { throw failure("close failed") }
    }

    func failure(_ what: String) -> AtomicFileError {
        let reason = String(cString: strerror(errno))
        remove()
        return AtomicFileError(path: target, reason: "\(what) (\(reason)); the partial file was removed")
    }

    func publish(as url: URL, replacing: Bool) throws -> Outcome {
        let final = url.path
        if replacing {
            guard rename(path, final) == 0 else { throw failure("cannot rename the temporary file into place") }
            published()
            return .published
        }
        if moe_rename_noreplace(path, final) == 0 { published(); return .published }
        if errno == EEXIST { return .nameTaken }
        guard errno == EINVAL || errno == ENOSYS || errno == ENOTSUP || errno == EPERM else {
            throw failure("cannot move the temporary file into place")
        }
        if link(path, final) == 0 { remove(); return .published }
        if errno == EEXIST { return .nameTaken }
        guard errno == EPERM || errno == ENOTSUP || errno == EMLINK || errno == ENOSYS else {
            throw failure("cannot link the temporary file into place")
        }
        // No hard links here: claim the name first so that the rename replaces only our own empty file.
        let claim = open(final, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        if claim < 0 {
            if errno == EEXIST { return .nameTaken }
            throw failure("cannot create \(final)")
        }
        close(claim)
        guard rename(path, final) == 0 else {
            let error = failure("cannot rename the temporary file into place")
            unlink(final)
            throw error
        }
        published()
        return .published
    }

    private func published() {
        exists = false
        cleanup.release()
    }

    func remove() {
        if exists { unlink(path); exists = false }
        cleanup.release()
    }
}
