import CCrypto
import Foundation

/// SHA-256 through OpenSSL's libcrypto (a system library) rather than swift-crypto, whose vendored BoringSSL adds
/// minutes to every build. Fed in pieces, so a file need not be read whole.
public final class SHA256Hasher {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    private let context: OpaquePointer
    private var finished = false

    public init() throws(Failure) {
        guard let context = EVP_MD_CTX_new() else { throw Failure(description: "cannot start a SHA-256 digest") }
        guard EVP_DigestInit_ex(context, EVP_sha256(), nil) == 1 else {
            EVP_MD_CTX_free(context)
            throw Failure(description: "cannot start a SHA-256 digest")
        }
        self.context = context
    }

    deinit { EVP_MD_CTX_free(context) }

    public func update(_ bytes: UnsafeRawBufferPointer) throws(Failure) {
        guard !finished else { throw Failure(description: "SHA-256 digest updated after it was finished") }
        guard feed(bytes) else { throw Failure(description: "SHA-256 digest failed") }
    }

    public func update(_ data: Data) throws(Failure) {
        guard !finished else { throw Failure(description: "SHA-256 digest updated after it was finished") }
        guard data.withUnsafeBytes({ feed($0) }) else { throw Failure(description: "SHA-256 digest failed") }
    }

    public func update(_ text: String) throws(Failure) {
        guard !finished else { throw Failure(description: "SHA-256 digest updated after it was finished") }
        var text = text
        guard text.withUTF8({ feed(UnsafeRawBufferPointer($0)) }) else { throw Failure(description: "SHA-256 digest failed") }
    }

    private func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
        bytes.isEmpty || EVP_DigestUpdate(context, bytes.baseAddress, bytes.count) == 1
    }

    /// The 64-character lowercase hex digest of everything fed so far; the hasher takes no more input after this.
    public func hexDigest() throws(Failure) -> String {
        guard !finished else { throw Failure(description: "SHA-256 digest finished twice") }
        finished = true
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        guard EVP_DigestFinal_ex(context, &digest, &length) == 1, length == 32 else {
            throw Failure(description: "SHA-256 digest failed")
        }
        return digest[..<32].map { String(format: "%02x", $0) }.joined()
    }
}
