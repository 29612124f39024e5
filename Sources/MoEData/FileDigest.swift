import Foundation
import MoECore

/// SHA-256 of a file, to check a downloaded Hub blob against its LFS ETag (the content's sha256).
enum FileDigest {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// The hex digest of a file, read in 1 MiB pieces.
    static func sha256Hex(ofFile url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        do {
            let hasher = try SHA256Hasher()
            while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
                try hasher.update(chunk)
            }
            return try hasher.hexDigest()
        } catch let failure as SHA256Hasher.Failure {
            throw Failure(description: "\(url.path): \(failure.description)")
        }
    }
}
