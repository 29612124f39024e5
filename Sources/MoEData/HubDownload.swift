import Foundation
import MoEJSON

#if canImport(FoundationNetworking)
import FoundationNetworking
#endif

/// Reports a file download: its repo path, bytes so far, and its size when the Hub announced it.
public typealias DownloadProgress = @Sendable (_ file: String, _ bytes: Int64, _ total: Int64?) -> Void

/// A download from the Hub that failed: one line naming the URL (or cache file) and what went wrong.
public struct HubDownloadError: Error, CustomStringConvertible, LocalizedError, Sendable {
    public let description: String
    public var errorDescription: String? { description }
    public init(_ description: String) { self.description = description }
}

/// Fetches a dataset split's files from the Hub (or `HF_ENDPOINT`) into the Hub cache exactly as
/// huggingface_hub's `hf_hub_download` does, so that lm-eval and moe-eval share one cache:
/// the revision's commit from `/api/datasets/REPO/revision/REV`, each file's ETag, size and commit from a
/// HEAD on `/datasets/REPO/resolve/COMMIT/PATH` (`X-Linked-Etag`/`X-Linked-Size` for LFS files, which the
/// Hub redirects to a CDN), the content streamed into `blobs/ETAG.incomplete` (resumed with a Range request
/// when a previous run stopped), checked (size; sha256 for LFS ETags), renamed to `blobs/ETAG`, then
/// linked from `snapshots/COMMIT/PATH` and the revision recorded in `refs/REV`.
public struct HubDownloader: Sendable {
    public var environment: HubEnvironment
    /// Download progress: the file's repo path, bytes so far and the size when known.
    public var progress: DownloadProgress?

    public init(environment: HubEnvironment, progress: DownloadProgress? = nil) {
        self.environment = environment
        self.progress = progress
    }

    /// Downloads `split`'s files from the first of `HubCache.revisions` that has them; nil when the repo or
    /// no revision of it holds the split.
    public func download(_ split: HubDatasetSplit) throws -> [URL]? {
        for revision in HubCache.revisions {
            let infoURL = "\(environment.endpoint)/api/datasets/\(split.repo)/revision/\(Self.pathEscaped(revision, keepSlashes: false))"
            guard !environment.offline else {
                throw HubDownloadError("\(infoURL): not fetched, HF_HUB_OFFLINE is set (\(split) is not in the caches)")
            }
            let info = try HTTPClient(token: environment.token).get(infoURL, maxBytes: 64 << 20)
            if info.status == 404 { continue }
            try Self.check(info.status, infoURL)
            let json: JSONValue
            do {
                json = try JSONValue.parse([UInt8](info.body))
            } catch {
                throw HubDownloadError("\(infoURL): the dataset info is not JSON (\(error))")
            }
            guard let commit = json["sha"]?.stringValue, HubCache.isCommitName(commit) else {
                throw HubDownloadError("\(infoURL): the dataset info has no commit 'sha'")
            }
            let paths = (json["siblings"]?.arrayValue ?? []).compactMap { $0["rfilename"]?.stringValue }
            let chosen = split.files(among: paths)
            guard !chosen.isEmpty else { continue }
            // Every blob first, then the snapshot links and the ref: a split of several files never shows up
            // in a snapshot with some of them missing.
            let fetched = try chosen.map { try fetchBlob(repo: split.repo, commit: commit, path: $0) }
            for (file, blob) in fetched {
                if let blob { try link(file, to: blob) }
            }
            try writeRef(repo: split.repo, revision: revision, commit: commit)
            return fetched.map(\.file)
        }
        return nil
    }

    /// A file's content into `blobs/ETAG`; its snapshot path and the blob to link it to (nil: already linked).
    func fetchBlob(repo: String, commit: String, path: String) throws -> (file: URL, blob: URL?) {
        guard !path.split(separator: "/").contains(where: { $0 == ".." || $0 == "." }), !path.hasPrefix("/") else {
            throw HubDownloadError("\(repo): refusing the file path '\(path)' (it leaves the snapshot folder)")
        }
        let cache = environment.hubCache
        let snapshotFile = HubCache.snapshot(repo, commit: commit, in: cache).appendingPathComponent(path)
        if FileManager.default.fileExists(atPath: snapshotFile.resolvingSymlinksInPath().path) { return (snapshotFile, nil) }
        let url = "\(environment.endpoint)/datasets/\(repo)/resolve/\(commit)/\(Self.pathEscaped(path, keepSlashes: true))"
        guard !environment.offline else { throw HubDownloadError("\(url): not fetched, HF_HUB_OFFLINE is set") }

        let client = HTTPClient(token: environment.token)
        let head = try client.head(url)
        if head.response.statusCode == 404, let headerCommit = head.response.value(forHTTPHeaderField: "X-Repo-Commit"),
            HubCache.isCommitName(headerCommit)
        {
            let marker = HubCache.repoFolder(repo, in: cache).appendingPathComponent(".no_exist/\(headerCommit)/\(path)")
            try? FileManager.default.createDirectory(at: marker.deletingLastPathComponent(), withIntermediateDirectories: true)
            FileManager.default.createFile(atPath: marker.path, contents: nil)
        }
        if head.location == nil { try Self.check(head.response.statusCode, url) }
        guard let rawETag = head.response.value(forHTTPHeaderField: "X-Linked-Etag") ?? head.response.value(forHTTPHeaderField: "ETag")
        else {
            throw HubDownloadError("\(url): the Hub sent no ETag (is HF_ENDPOINT a Hub?)")
        }
        let etag = Self.normalizedETag(rawETag)
        guard HubCache.isCommitName(etag) else { throw HubDownloadError("\(url): unusable ETag '\(rawETag.prefix(80))'") }
        let sizeText = head.response.value(forHTTPHeaderField: "X-Linked-Size") ?? head.response.value(forHTTPHeaderField: "Content-Length")
        var expectedSize: Int64?
        if let sizeText {
            guard let size = Int64(sizeText.trimmingCharacters(in: .whitespaces)), size >= 0 else {
                throw HubDownloadError("\(url): bad size header '\(sizeText.prefix(40))'")
            }
            expectedSize = size
        }
        let downloadURL = head.location ?? url

        let blobs = HubCache.repoFolder(repo, in: cache).appendingPathComponent("blobs")
        let blob = blobs.appendingPathComponent(etag)
        do {
            try FileManager.default.createDirectory(at: blobs, withIntermediateDirectories: true)
        } catch {
            throw HubDownloadError("\(blobs.path): cannot create the cache folder (\(error.localizedDescription))")
        }
        if !FileManager.default.fileExists(atPath: blob.path) {
            let incomplete = blobs.appendingPathComponent(etag + ".incomplete")
            // A signed CDN URL gets no token, as huggingface_hub sends it only to the Hub's own origin.
            let downloader = HTTPClient(token: HTTPClient.sameOrigin(url, downloadURL) ? environment.token : nil)
            try downloader.download(downloadURL, to: incomplete, expectedSize: expectedSize, label: path, progress: progress)
            try verify(incomplete, etag: etag, expectedSize: expectedSize, url: url)
            do {
                try FileManager.default.moveItem(at: incomplete, to: blob)
            } catch {
                throw HubDownloadError("\(blob.path): cannot move the finished download into place (\(error.localizedDescription))")
            }
        }
        return (snapshotFile, blob)
    }

    /// The finished `.incomplete` file must have the announced size, and an LFS file the sha256 its ETag
    /// names; a file that fails is deleted, so the next run starts over instead of resuming garbage.
    func verify(_ file: URL, etag: String, expectedSize: Int64?, url: String) throws {
        let size = (try? FileManager.default.attributesOfItem(atPath: file.path)[.size] as? Int64) ?? nil
        if let expectedSize, size != expectedSize {
            throw HubDownloadError(
                "\(url): the body was cut short: \(size ?? 0) of \(expectedSize) bytes in \(file.path) (run again to resume)")
        }
        if etag.count == 64, etag.allSatisfy(\.isHexDigit) {
            let digest = try FileDigest.sha256Hex(ofFile: file)
            if digest != etag.lowercased() {
                try? FileManager.default.removeItem(at: file)
                throw HubDownloadError("\(url): the content's sha256 \(digest) is not its ETag \(etag); the partial file was removed")
            }
        }
    }

    /// `snapshots/COMMIT/PATH` → `../../blobs/ETAG`, relative as huggingface_hub writes it.
    func link(_ snapshotFile: URL, to blob: URL) throws {
        let fm = FileManager.default
        do {
            try fm.createDirectory(at: snapshotFile.deletingLastPathComponent(), withIntermediateDirectories: true)
            if (try? fm.destinationOfSymbolicLink(atPath: snapshotFile.path)) != nil || fm.fileExists(atPath: snapshotFile.path) {
                try fm.removeItem(at: snapshotFile)
            }
            let snapshotRoot = snapshotFile.pathComponents, blobParts = blob.pathComponents
            var common = 0
            while common < min(snapshotRoot.count - 1, blobParts.count), snapshotRoot[common] == blobParts[common] { common += 1 }
            let relative = Array(repeating: "..", count: snapshotRoot.count - 1 - common) + blobParts[common...]
            try fm.createSymbolicLink(atPath: snapshotFile.path, withDestinationPath: relative.joined(separator: "/"))
        } catch {
            throw HubDownloadError("\(snapshotFile.path): cannot link the snapshot entry to its blob (\(error.localizedDescription))")
        }
    }

    /// `refs/REVISION` holds the commit, written to a temporary name and renamed so readers never see half of it.
    func writeRef(repo: String, revision: String, commit: String) throws {
        let ref = HubCache.refFile(repo, revision: revision, in: environment.hubCache)
        let temporary = ref.deletingLastPathComponent().appendingPathComponent(
            ref.lastPathComponent + ".\(UUID().uuidString.prefix(8)).tmp")
        do {
            try FileManager.default.createDirectory(at: ref.deletingLastPathComponent(), withIntermediateDirectories: true)
            try Data(commit.utf8).write(to: temporary)
            if FileManager.default.fileExists(atPath: ref.path) { try FileManager.default.removeItem(at: ref) }
            try FileManager.default.moveItem(at: temporary, to: ref)
        } catch {
            throw HubDownloadError("\(ref.path): cannot record the revision (\(error.localizedDescription))")
        }
    }

    /// The hex sha256 of a file: what an LFS file's ETag names.
    public static func sha256(of file: URL) throws -> String { try FileDigest.sha256Hex(ofFile: file) }

    /// `_normalize_etag`: drops a weak `W/` prefix and the quotes.
    static func normalizedETag(_ etag: String) -> String {
        var text = Substring(etag.trimmingCharacters(in: .whitespaces))
        if text.hasPrefix("W/") { text = text.dropFirst(2) }
        return String(text).trimmingCharacters(in: CharacterSet(charactersIn: "\""))
    }

    static func check(_ status: Int, _ url: String) throws {
        switch status {
        case 200..<300: return
        case 401, 403:
            throw HubDownloadError("\(url): HTTP \(status), not authorized (a gated or private dataset needs HF_TOKEN with access)")
        case 404: throw HubDownloadError("\(url): HTTP 404, not found")
        default: throw HubDownloadError("\(url): HTTP \(status)")
        }
    }

    /// Percent-encodes a revision (`refs/convert/parquet` → `refs%2Fconvert%2Fparquet`) or a file path.
    static func pathEscaped(_ text: String, keepSlashes: Bool) -> String {
        var allowed = CharacterSet.alphanumerics
        allowed.insert(charactersIn: "-._~" + (keepSlashes ? "/" : ""))
        return text.addingPercentEncoding(withAllowedCharacters: allowed) ?? text
    }
}

/// Blocking HTTP on URLSession: small GETs into memory, HEADs without following redirects to other hosts,
/// and file downloads streamed to disk with resume. The token is sent to the Hub's origin only, never to
/// the CDN a file redirects to.
struct HTTPClient: Sendable {
    var token: String?
    var timeout: TimeInterval = 60

    struct Head { var response: HTTPURLResponse; var location: String? }

    func request(_ url: URL, method: String) -> URLRequest {
        var request = URLRequest(url: url, cachePolicy: .reloadIgnoringLocalCacheData, timeoutInterval: timeout)
        request.httpMethod = method
        request.setValue("identity", forHTTPHeaderField: "Accept-Encoding")
        request.setValue("moe-eval", forHTTPHeaderField: "User-Agent")
        if let token { request.setValue("Bearer \(token)", forHTTPHeaderField: "Authorization") }
        return request
    }

    func parse(_ url: String) throws -> URL {
        guard let parsed = URL(string: url), let scheme = parsed.scheme?.lowercased(), scheme == "http" || scheme == "https",
            parsed.host != nil
        else {
            throw HubDownloadError("\(url): not an http(s) URL (check HF_ENDPOINT)")
        }
        return parsed
    }

    /// Scheme, host and port agree (huggingface_hub's `_is_same_or_hub_host` without its list of Hub hosts).
    static func sameOrigin(_ a: String, _ b: String) -> Bool {
        guard let x = URL(string: a), let y = URL(string: b) else { return false }
        return origin(x) == origin(y)
    }

    static func origin(_ url: URL) -> String {
        let scheme = url.scheme?.lowercased() ?? ""
        return "\(scheme)://\(url.host?.lowercased() ?? ""):\(url.port ?? (scheme == "https" ? 443 : 80))"
    }

    func get(_ url: String, maxBytes: Int) throws -> (status: Int, body: Data) {
        let transfer = Transfer(followRedirects: true, origin: HTTPClient.origin(try parse(url)), sink: nil, maxBytes: maxBytes)
        let response = try transfer.run(request(try parse(url), method: "GET"), label: url)
        return (response.statusCode, transfer.body)
    }

    /// A HEAD that follows redirects within the Hub (renamed repos) and stops at one to another host (the
    /// CDN holding LFS content), whose headers carry the file's metadata and whose target is the download URL.
    func head(_ url: String) throws -> Head {
        var current = try parse(url)
        for _ in 0..<5 {
            let transfer = Transfer(followRedirects: false, origin: HTTPClient.origin(current), sink: nil, maxBytes: 1 << 20)
            let response = try transfer.run(request(current, method: "HEAD"), label: current.absoluteString)
            guard (300..<400).contains(response.statusCode), let location = response.value(forHTTPHeaderField: "Location"),
                let target = URL(string: location, relativeTo: current)?.absoluteURL
            else {
                return Head(response: response, location: nil)
            }
            if HTTPClient.origin(target) == HTTPClient.origin(current) && response.value(forHTTPHeaderField: "X-Linked-Etag") == nil {
                current = target
                continue
            }
            return Head(response: response, location: target.absoluteString)
        }
        throw HubDownloadError("\(url): too many redirects")
    }

    /// Streams `url` into `file`, continuing from the bytes already there with a Range request.
    func download(_ url: String, to file: URL, expectedSize: Int64?, label: String, progress: DownloadProgress?) throws {
        let fm = FileManager.default
        if !fm.fileExists(atPath: file.path) { fm.createFile(atPath: file.path, contents: nil) }
        var have = ((try? fm.attributesOfItem(atPath: file.path)[.size]) as? Int64) ?? 0
        if let expectedSize, have > expectedSize { have = 0 }
        if let expectedSize, have == expectedSize, have > 0 { return }
        guard let handle = try? FileHandle(forWritingTo: file) else {
            throw HubDownloadError("\(file.path): cannot be written")
        }
        defer { try? handle.close() }
        var request = request(try parse(url), method: "GET")
        if have > 0 { request.setValue("bytes=\(have)-", forHTTPHeaderField: "Range") }
        let transfer = Transfer(followRedirects: true, origin: request.url.map(HTTPClient.origin) ?? "", sink: handle, maxBytes: nil)
        transfer.resumeFrom = have
        transfer.expectedSize = expectedSize
        transfer.onProgress = { done in progress?(label, done, expectedSize) }
        let response: HTTPURLResponse
        do {
            response = try transfer.run(request, label: url)
        } catch {
            let now = ((try? fm.attributesOfItem(atPath: file.path)[.size]) as? Int64) ?? 0
            throw HubDownloadError(
                "\(url): download stopped after \(now)\(expectedSize.map { " of \($0)" } ?? "") bytes (\(error)); the partial file \(file.path) is kept for the next run to resume"
            )
        }
        if response.statusCode == 416 {
            try? handle.truncate(atOffset: 0)
            throw HubDownloadError("\(url): HTTP 416, the server refused to resume; the partial file was reset, run again")
        }
        try HubDownloader.check(response.statusCode, url)
    }
}

/// One URLSession task run to completion on the calling thread.
final class Transfer: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    let followRedirects: Bool
    let origin: String
    let sink: FileHandle?
    let maxBytes: Int?
    var resumeFrom: Int64 = 0
    var expectedSize: Int64?
    var onProgress: ((Int64) -> Void)?
    private(set) var body = Data()
    private var response: HTTPURLResponse?
    private var failure: Error?
    private var written: Int64 = 0
    private var lastReport = Date.distantPast
    private let done = DispatchSemaphore(value: 0)

    init(followRedirects: Bool, origin: String, sink: FileHandle?, maxBytes: Int?) {
        self.followRedirects = followRedirects
        self.origin = origin
        self.sink = sink
        self.maxBytes = maxBytes
    }

    func run(_ request: URLRequest, label: String) throws -> HTTPURLResponse {
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: nil)
        defer { session.finishTasksAndInvalidate() }
        session.dataTask(with: request).resume()
        done.wait()
        if let failure { throw failure }
        guard let response else { throw HubDownloadError("\(label): no HTTP response") }
        return response
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        guard followRedirects else { return completionHandler(nil) }
        var next = request
        if request.url.map(HTTPClient.origin) != origin { next.setValue(nil, forHTTPHeaderField: "Authorization") }
        completionHandler(next)
    }

    func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping @Sendable (URLSession.ResponseDisposition) -> Void
    ) {
        let http = response as? HTTPURLResponse
        self.response = http
        if let sink, let http, (200..<300).contains(http.statusCode) {
            do {
                if http.statusCode == 200 && resumeFrom > 0 {
                    // The server ignored the Range header: start the file over.
                    try sink.truncate(atOffset: 0)
                    resumeFrom = 0
                } else {
                    try sink.seekToEnd()
                }
            } catch {
                failure = error
                return completionHandler(.cancel)
            }
        }
        completionHandler(.allow)
    }

    func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        guard failure == nil else { return }
        if let sink, let status = response?.statusCode, (200..<300).contains(status) {
            do {
                try sink.write(contentsOf: data)
            } catch {
                failure = error
                dataTask.cancel()
                return
            }
            written += Int64(data.count)
            if let expectedSize, resumeFrom + written > expectedSize {
                failure = HubDownloadError("the server sent more than the announced \(expectedSize) bytes")
                dataTask.cancel()
                return
            }
            if Date().timeIntervalSince(lastReport) > 0.2 {
                lastReport = Date()
                onProgress?(resumeFrom + written)
            }
        } else {
            if let maxBytes, body.count + data.count > maxBytes {
                failure = HubDownloadError("response larger than \(maxBytes) bytes")
                dataTask.cancel()
                return
            }
            body.append(data)
        }
    }

    func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: Error?) {
        if failure == nil, let error { failure = error }
        if response == nil, let http = task.response as? HTTPURLResponse { response = http }
        if sink != nil, failure == nil { onProgress?(resumeFrom + written) }
        done.signal()
    }
}
