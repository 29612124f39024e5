import Crypto
import Foundation

/// SHA-256 of a file, to check a downloaded Hub blob against its LFS ETag (the content's sha256).
enum FileDigest {
    /// The hex digest of a file, read in 1 MiB pieces.
    static func sha256Hex(ofFile url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        var digest = SHA256()
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty { digest.update(data: chunk) }
        return digest.finalize().map { String(format: "%02x", $0) }.joined()
    }
}
