import Foundation

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A Hugging Face Hub stand-in on 127.0.0.1 for tests: the endpoints huggingface_hub and moe-eval use
/// (`/api/datasets/REPO/revision/REV`, `HEAD`/`GET /datasets/REPO/resolve/COMMIT/PATH`, and a "CDN" that LFS
/// files redirect to, with Range requests), plus faults a test switches on: an HTTP status for matching
/// paths, or a body cut short. Every request is recorded.
public final class LoopbackHub: @unchecked Sendable {
    public struct Request: Sendable {
        public var method: String
        public var path: String
        public var headers: [String: String]
    }

    public struct Response: Sendable {
        public var status: Int
        public var headers: [(String, String)]
        public var body: [UInt8]
        /// Send only this many body bytes (after announcing all of them), then close the connection.
        public var cutAfter: Int?

        public init(status: Int, headers: [(String, String)] = [], body: [UInt8] = [], cutAfter: Int? = nil) {
            self.status = status
            self.headers = headers
            self.body = body
            self.cutAfter = cutAfter
        }
    }

    /// One dataset repo revision: its commit and files (path → content).
    public struct Revision: Sendable {
        public var commit: String
        public var files: [String: [UInt8]]
        public init(commit: String, files: [String: [UInt8]]) {
            self.commit = commit
            self.files = files
        }
    }

    private let lock = NSLock()
    private var repos: [String: [String: Revision]] = [:]
    private var blobs: [String: [UInt8]] = [:]
    private var recorded: [Request] = []
    private var faultHandler: (@Sendable (Request) -> Response?)?
    private var requiredToken: String?
    private var cdn: String?
    private let listener: Int32
    public let port: Int
    public var endpoint: String { "http://127.0.0.1:\(port)" }

    public init() throws {
        #if canImport(Glibc)
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #else
        let fd = socket(AF_INET, SOCK_STREAM, 0)
        #endif
        guard fd >= 0 else { throw POSIXError(.EIO) }
        var yes: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &yes, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, listen(fd, 16) == 0 else { close(fd); throw POSIXError(.EADDRINUSE) }
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        listener = fd
        port = Int(UInt16(bigEndian: address.sin_port))
        let thread = Thread { [weak self] in self?.acceptLoop() }
        thread.start()
    }

    deinit { stop() }

    public func stop() {
        shutdown(listener, Int32(SHUT_RDWR))
        close(listener)
    }

    public func add(repo: String, revision: String, _ content: Revision) {
        let digests = content.files.values.map { (Self.sha256($0), $0) }
        lock.withLock {
            repos[repo, default: [:]][revision] = content
            for (digest, bytes) in digests { blobs[digest] = bytes }
        }
    }

    /// Answers matching requests itself instead of the Hub logic (nil: no fault for that request).
    public func setFault(_ handler: (@Sendable (Request) -> Response?)?) { lock.withLock { faultHandler = handler } }

    /// LFS files redirect to this endpoint's `/cdn/SHA256` (another LoopbackHub holding the same files)
    /// instead of this server's own.
    public func redirectContent(to endpoint: String?) { lock.withLock { cdn = endpoint } }

    /// Requests without `Authorization: Bearer TOKEN` get 401.
    public func requireToken(_ token: String?) { lock.withLock { requiredToken = token } }

    public var requests: [Request] { lock.withLock { recorded } }

    public static func sha256(_ bytes: [UInt8]) -> String {
        // The test side computes digests with the system tool, independently of the code under test.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("loopback-hub-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: file.path, contents: Data(bytes))
        defer { try? FileManager.default.removeItem(at: file) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["sha256sum", file.path]
        let out = Pipe()
        process.standardOutput = out
        try? process.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).split(separator: " ").first.map(String.init) ?? ""
    }

    private func acceptLoop() {
        while true {
            let client = accept(listener, nil, nil)
            if client < 0 { return }
            let thread = Thread { [weak self] in
                self?.serve(client)
                close(client)
            }
            thread.start()
        }
    }

    private func serve(_ client: Int32) {
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while !buffer.containsHeaderEnd {
            let n = recv(client, &chunk, chunk.count, 0)
            if n <= 0 { return }
            buffer += chunk[0..<n]
            if buffer.count > 65536 { return }
        }
        let head = String(decoding: buffer, as: UTF8.self).components(separatedBy: "\r\n\r\n")[0]
        let lines = head.components(separatedBy: "\r\n")
        let parts = lines[0].split(separator: " ")
        guard parts.count >= 2 else { return }
        var headers: [String: String] = [:]
        for line in lines.dropFirst() {
            guard let colon = line.firstIndex(of: ":") else { continue }
            headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
        }
        let request = Request(method: String(parts[0]), path: String(parts[1]), headers: headers)
        lock.withLock { recorded.append(request) }
        let response = respond(request)
        var text = "HTTP/1.1 \(response.status) \(response.status == 200 ? "OK" : "Status")\r\n"
        var names = Set<String>()
        for (name, value) in response.headers {
            text += "\(name): \(value)\r\n"
            names.insert(name.lowercased())
        }
        if !names.contains("content-length") { text += "Content-Length: \(response.body.count)\r\n" }
        text += "Connection: close\r\n\r\n"
        var bytes = Array(text.utf8)
        if request.method != "HEAD" { bytes += response.body.prefix(response.cutAfter ?? response.body.count) }
        var sent = 0
        while sent < bytes.count {
            let n = bytes[sent...].withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            if n <= 0 { return }
            sent += n
        }
    }

    private func respond(_ request: Request) -> Response {
        let (fault, token) = lock.withLock { (faultHandler, requiredToken) }
        if let response = fault?(request) { return response }
        if let token, request.headers["authorization"] != "Bearer \(token)", !request.path.hasPrefix("/cdn/") {
            return Response(status: 401, body: Array("{\"error\":\"Unauthorized\"}".utf8))
        }
        let path = request.path.removingPercentEncoding ?? request.path
        if path.hasPrefix("/api/datasets/") {
            // /api/datasets/ORG/NAME/revision/REV (REV may contain slashes once unescaped)
            let rest = path.dropFirst("/api/datasets/".count).split(separator: "/", maxSplits: 3, omittingEmptySubsequences: false)
            guard rest.count == 4, rest[2] == "revision" else { return Response(status: 404) }
            let repo = "\(rest[0])/\(rest[1])"
            guard let revision = lock.withLock({ repos[repo]?[String(rest[3])] }) else {
                return Response(status: 404, body: Array("{\"error\":\"Revision not found\"}".utf8))
            }
            let siblings = revision.files.keys.sorted().map { "{\"rfilename\":\"\($0)\"}" }.joined(separator: ",")
            return Response(
                status: 200, headers: [("Content-Type", "application/json")],
                body: Array("{\"id\":\"\(repo)\",\"sha\":\"\(revision.commit)\",\"siblings\":[\(siblings)]}".utf8))
        }
        if path.hasPrefix("/datasets/") {
            // /datasets/ORG/NAME/resolve/COMMIT/PATH
            let rest = path.dropFirst("/datasets/".count).split(separator: "/", maxSplits: 4, omittingEmptySubsequences: false)
            guard rest.count == 5, rest[2] == "resolve" else { return Response(status: 404) }
            let repo = "\(rest[0])/\(rest[1])", commit = String(rest[3]), file = String(rest[4])
            let found = lock.withLock { repos[repo]?.values.first { $0.commit == commit }?.files[file] }
            guard let content = found else {
                return Response(status: 404, headers: [("X-Repo-Commit", commit), ("X-Error-Code", "EntryNotFound")])
            }
            let digest = lock.withLock { blobs.first { $0.value == content }?.key } ?? ""
            if file.hasSuffix(".parquet") || file.hasSuffix(".jsonl") {
                // LFS: the Hub answers with metadata and a redirect to the content store.
                let base = lock.withLock { cdn } ?? ""
                return Response(
                    status: 302,
                    headers: [
                        ("Location", "\(base)/cdn/\(digest)"), ("X-Repo-Commit", commit),
                        ("X-Linked-Etag", "\"\(digest)\""), ("X-Linked-Size", "\(content.count)"),
                        ("ETag", "W/\"git-\(commit.prefix(8))\""), ("Content-Length", "0"),
                    ])
            }
            return Response(status: 200, headers: [("X-Repo-Commit", commit), ("ETag", "\"\(digest)\"")], body: content)
        }
        if path.hasPrefix("/cdn/") {
            let digest = String(path.dropFirst("/cdn/".count))
            guard let content = lock.withLock({ blobs[digest] }) else { return Response(status: 404) }
            if let range = request.headers["range"], range.hasPrefix("bytes="), range.hasSuffix("-"),
                let start = Int(range.dropFirst(6).dropLast())
            {
                guard start < content.count else { return Response(status: 416) }
                return Response(
                    status: 206, headers: [("Content-Range", "bytes \(start)-\(content.count - 1)/\(content.count)")],
                    body: Array(content[start...]))
            }
            return Response(status: 200, headers: [("ETag", "\"\(digest)\"")], body: content)
        }
        return Response(status: 404)
    }
}

extension Array where Element == UInt8 {
    var containsHeaderEnd: Bool {
        guard count >= 4 else { return false }
        for i in 0...(count - 4) where self[i] == 13 && self[i + 1] == 10 && self[i + 2] == 13 && self[i + 3] == 10 { return true }
        return false
    }
}
