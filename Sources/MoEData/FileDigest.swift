import CCrypto
import Foundation

/// SHA-256 of a file, to check a downloaded Hub blob against its LFS ETag (the content's sha256). OpenSSL's
/// libcrypto (a system library) rather than swift-crypto, whose vendored BoringSSL adds minutes to every build.
enum FileDigest {
    struct Failure: Error, CustomStringConvertible { let description: String }

    /// The hex digest of a file, read in 1 MiB pieces.
    static func sha256Hex(ofFile url: URL) throws -> String {
        let handle = try FileHandle(forReadingFrom: url)
        defer { try? handle.close() }
        guard let context = EVP_MD_CTX_new() else { throw Failure(description: "\(url.path): cannot start a SHA-256 digest") }
        defer { EVP_MD_CTX_free(context) }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            throw Failure(description: "\(url.path): cannot start a SHA-256 digest")
        }
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            let ok = chunk.withUnsafeBytes { EVP_DigestUpdate(context, $0.baseAddress, $0.count) }
            guard ok == 1 else { throw Failure(description: "\(url.path): SHA-256 digest failed") }
        }
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else {
            throw Failure(description: "\(url.path): SHA-256 digest failed")
        }
        return digest[..<32].map { String(format: "%02x", $0) }.joined()
    }
}
