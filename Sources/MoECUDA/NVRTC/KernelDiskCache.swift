import Foundation
import MoECore

/// Compiled kernels on disk, so that a run compiles each kernel once per NVRTC version and GPU architecture.
/// Entries are named by the SHA-256 of everything that decides the output (source, options, NVRTC version,
/// architecture) and carry their own length and SHA-256: an entry that is truncated, altered or not ours is reported
/// as corrupt and recompiled, never loaded into the GPU.
public struct KernelDiskCache: Sendable, Hashable {
    public let folder: URL

    public init(folder: URL) { self.folder = folder }

    /// `${XDG_CACHE_HOME:-~/.cache}/moe-eval/cuda-kernels`; nil when neither variable names a folder.
    public static func standard(environment: [String: String] = ProcessInfo.processInfo.environment) -> KernelDiskCache? {
        let base: URL
        if let xdg = environment["XDG_CACHE_HOME"], xdg.hasPrefix("/") {
            base = URL(fileURLWithPath: xdg, isDirectory: true)
        } else if let home = environment["HOME"], home.hasPrefix("/") {
            base = URL(fileURLWithPath: home, isDirectory: true).appendingPathComponent(".cache", isDirectory: true)
        } else {
            return nil
        }
        return KernelDiskCache(folder: base.appendingPathComponent("moe-eval/cuda-kernels", isDirectory: true))
    }

    /// The hex SHA-256 naming an entry. Fields are length-prefixed so that no two different inputs hash alike.
    public static func key(
        source: CUDAKernelSource, options: [String], nvrtcVersion: (major: Int, minor: Int), architecture: Int,
        format: CompiledKernel.Format
    ) throws(SHA256Hasher.Failure) -> String {
        let hasher = try SHA256Hasher()
        let fields =
            [
                "moe-eval cuda kernel v1", source.name, source.source, "\(nvrtcVersion.major).\(nvrtcVersion.minor)", "\(architecture)",
                format.rawValue,
            ]
            + options
        for field in fields {
            try hasher.update("\(field.utf8.count):")
            try hasher.update(field)
        }
        return try hasher.hexDigest()
    }

    public enum Lookup: Sendable, Hashable {
        case hit([UInt8])
        case miss
        /// The entry exists but cannot be trusted; the reason names the file and what is wrong.
        case corrupt(String)
    }

    /// Compiled images are a few hundred KiB; anything this large is not an entry of ours.
    static let maximumEntryBytes = 64 << 20
    static let magic = "moe-eval-kernel"

    public func url(key: String, format: CompiledKernel.Format) -> URL {
        folder.appendingPathComponent("\(key).\(format.rawValue)")
    }

    public func lookup(key: String, format: CompiledKernel.Format) -> Lookup {
        let file = url(key: key, format: format)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: file.path) else { return .miss }
        let size = (attributes[.size] as? NSNumber)?.intValue ?? -1
        guard size >= 0, size <= Self.maximumEntryBytes else {
            return .corrupt("\(file.path): \(size) bytes is not a cache entry (at most \(Self.maximumEntryBytes))")
        }
        guard let data = try? Data(contentsOf: file) else { return .corrupt("\(file.path): cannot be read") }
        return Self.readEntry(data, format: format, file: file.path)
    }

    /// An entry's bytes as `lookup` judges them, apart from the file system so that they can be fuzzed; `file` names
    /// the entry in the reasons.
    static func readEntry(_ data: Data, format: CompiledKernel.Format, file: String) -> Lookup {
        guard data.count <= Self.maximumEntryBytes else {
            return .corrupt("\(file): \(data.count) bytes is not a cache entry (at most \(Self.maximumEntryBytes))")
        }
        guard let newline = data.firstIndex(of: UInt8(ascii: "\n")), newline - data.startIndex <= 256 else {
            return .corrupt("\(file): no header line")
        }
        let header = String(decoding: data[data.startIndex..<newline], as: UTF8.self).split(separator: " ")
        let payload = data[(newline + 1)...]
        guard header.count == 4, header[0] == Self.magic, header[1] == format.rawValue else {
            return .corrupt("\(file): header is not '\(Self.magic) \(format.rawValue) LENGTH SHA256'")
        }
        guard let length = Int(header[2]), length == payload.count else {
            return .corrupt("\(file): header says \(header[2]) bytes, \(payload.count) follow")
        }
        let digest: String
        do {
            let hasher = try SHA256Hasher()
            try hasher.update(Data(payload))
            digest = try hasher.hexDigest()
        } catch {
            return .corrupt("\(file): \(error.description)")
        }
        guard digest == header[3] else { return .corrupt("\(file): content does not match its SHA-256") }
        return .hit([UInt8](payload))
    }

    /// Writes an entry atomically (readers see the old entry or the whole new one), replacing a corrupt one.
    public func store(_ image: [UInt8], key: String, format: CompiledKernel.Format) throws {
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        let hasher = try SHA256Hasher()
        try image.withUnsafeBytes { raw in try hasher.update(raw) }
        let header = "\(Self.magic) \(format.rawValue) \(image.count) \(try hasher.hexDigest())\n"
        try AtomicFile.write(to: url(key: key, format: format), existing: .replace) { _, output in
            try output.write(Data(header.utf8))
            try image.withUnsafeBytes { try output.write($0) }
        }
    }
}
