import Foundation
import HubTestSupport
import MoEData
import Testing

/// The downloader against a Hub stand-in on 127.0.0.1: redirects, ETags, Range resumes, HTTP errors,
/// a body cut short, offline mode — and never a partial file in a snapshot.
@Suite(.serialized) struct HubDownloadTests {
    static let commit = "0123456789abcdef0123456789abcdef01234567"
    static let rows = (0..<200).map { "{\"text\": \"row \($0) of a file long enough to cut in half\"}\n" }.joined()
    static let split = HubDatasetSplit(repo: "EleutherAI/lambada_openai", config: "default", split: "test")

    func hub() throws -> LoopbackHub {
        let hub = try LoopbackHub()
        hub.add(
            repo: "EleutherAI/lambada_openai", revision: "refs/convert/parquet",
            .init(commit: Self.commit, files: ["default/test/0000.jsonl": Array(Self.rows.utf8), "README.md": Array("hi".utf8)]))
        return hub
    }

    func environment(_ hub: LoopbackHub, _ scratch: Scratch, token: String? = nil, offline: Bool = false) -> HubEnvironment {
        HubEnvironment(
            hubCache: scratch.url.appendingPathComponent("hub"), datasetsCache: scratch.url.appendingPathComponent("datasets"),
            endpoint: hub.endpoint, token: token, offline: offline)
    }

    var repoFolder: String { "datasets--EleutherAI--lambada_openai" }

    @Test func downloadsIntoTheHubCacheLayout() throws {
        let hub = try hub(), scratch = try Scratch()
        let env = environment(hub, scratch)
        let files = try #require(try HubDownloader(environment: env).download(Self.split))
        let digest = LoopbackHub.sha256(Array(Self.rows.utf8))
        let repo = env.hubCache.appendingPathComponent(repoFolder)
        #expect(files.map(\.path) == [repo.path + "/snapshots/\(Self.commit)/default/test/0000.jsonl"])
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: files[0].path) == "../../../../blobs/\(digest)")
        #expect(files[0].resolvingSymlinksInPath().path == repo.appendingPathComponent("blobs/\(digest)").resolvingSymlinksInPath().path)
        #expect(try String(contentsOf: repo.appendingPathComponent("refs/refs/convert/parquet"), encoding: .utf8) == Self.commit)
        #expect(try DataFile.read(files[0]).rows.count == 200)
        // main has no such repo revision here: the API said 404 and the conversion was used.
        #expect(hub.requests.contains { $0.path == "/api/datasets/EleutherAI/lambada_openai/revision/main" })
        #expect(hub.requests.contains { $0.path == "/api/datasets/EleutherAI/lambada_openai/revision/refs%2Fconvert%2Fparquet" })
        #expect(hub.requests.contains { $0.method == "GET" && $0.path == "/cdn/\(digest)" })
        // What was downloaded is now found offline, as lm-eval would find it.
        #expect(try HubCache.locate(Self.split, revision: "refs/convert/parquet", in: env.hubCache) == files)
        let before = hub.requests.count
        _ = try HubDownloader(environment: env).download(Self.split)
        #expect(!hub.requests.dropFirst(before).contains { $0.path.hasPrefix("/cdn/") }, "a cached blob is not fetched again")
    }

    @Test func theTokenGoesToTheHubOnly() throws {
        let hub = try hub(), scratch = try Scratch()
        hub.requireToken("hf_secret")
        #expect { try HubDownloader(environment: environment(hub, scratch)).download(Self.split) } throws: { error in
            let text = "\(error)"
            return text.contains("\(hub.endpoint)/api/datasets/EleutherAI/lambada_openai/revision/main: HTTP 401")
                && text.contains("HF_TOKEN")
        }
        // Content on the Hub's own origin gets the token; content on another origin (a CDN) does not.
        let cdn = try self.hub()
        hub.redirectContent(to: cdn.endpoint)
        let refused = hub.requests.count
        #expect(try HubDownloader(environment: environment(hub, scratch, token: "hf_secret")).download(Self.split)?.count == 1)
        #expect(hub.requests.dropFirst(refused).allSatisfy { $0.headers["authorization"] == "Bearer hf_secret" })
        #expect(!hub.requests.contains { $0.path.hasPrefix("/cdn/") })
        let fetched = cdn.requests.filter { $0.path.hasPrefix("/cdn/") }
        #expect(fetched.count == 1 && fetched.allSatisfy { $0.headers["authorization"] == nil })
        let other = try Scratch()
        hub.redirectContent(to: nil)
        #expect(try HubDownloader(environment: environment(hub, other, token: "hf_secret")).download(Self.split)?.count == 1)
        #expect(hub.requests.filter { $0.path.hasPrefix("/cdn/") }.allSatisfy { $0.headers["authorization"] == "Bearer hf_secret" })
    }

    @Test func serverErrorsNameTheURL() throws {
        let hub = try hub(), scratch = try Scratch()
        hub.setFault { $0.path.contains("/resolve/") ? .init(status: 500) : nil }
        #expect { try HubDownloader(environment: environment(hub, scratch)).download(Self.split) } throws: {
            "\($0)" == "\(hub.endpoint)/datasets/EleutherAI/lambada_openai/resolve/\(Self.commit)/default/test/0000.jsonl: HTTP 500"
        }
        #expect(!FileManager.default.fileExists(atPath: scratch.url.path + "/hub/\(repoFolder)/snapshots"))
        hub.setFault { $0.path.contains("/resolve/") ? .init(status: 404, headers: [("X-Repo-Commit", Self.commit)]) : nil }
        #expect { try HubDownloader(environment: environment(hub, scratch)).download(Self.split) } throws: {
            "\($0)".hasSuffix(": HTTP 404, not found")
        }
        // huggingface_hub remembers a missing file under .no_exist/COMMIT/PATH.
        #expect(
            FileManager.default.fileExists(atPath: scratch.url.path + "/hub/\(repoFolder)/.no_exist/\(Self.commit)/default/test/0000.jsonl")
        )
        let missing = HubDatasetSplit(repo: "nobody/nothing", split: "test")
        hub.setFault(nil)
        #expect(try HubDownloader(environment: environment(hub, scratch)).download(missing) == nil)
    }

    @Test func aBodyCutShortIsResumedWithARangeRequest() throws {
        let hub = try hub(), scratch = try Scratch()
        let env = environment(hub, scratch)
        let size = Self.rows.utf8.count
        hub.setFault { request in
            guard request.path.hasPrefix("/cdn/") else { return nil }
            return .init(status: 200, body: Array(Self.rows.utf8), cutAfter: size / 2)
        }
        #expect { try HubDownloader(environment: env).download(Self.split) } throws: { error in
            let text = "\(error)"
            return text.contains("\(hub.endpoint)/cdn/") && (text.contains("cut short") || text.contains("download stopped"))
                && !text.contains("\n")
        }
        let digest = LoopbackHub.sha256(Array(Self.rows.utf8))
        let incomplete = env.hubCache.appendingPathComponent("\(repoFolder)/blobs/\(digest).incomplete")
        let kept = try #require(try FileManager.default.attributesOfItem(atPath: incomplete.path)[.size] as? Int)
        #expect(kept > 0 && kept < size)
        // Nothing partial is visible: no blob, no snapshot entry, no ref.
        #expect(!FileManager.default.fileExists(atPath: env.hubCache.appendingPathComponent("\(repoFolder)/blobs/\(digest)").path))
        #expect(try HubCache.locate(Self.split, revision: "refs/convert/parquet", in: env.hubCache) == nil)

        hub.setFault(nil)
        let files = try #require(try HubDownloader(environment: env).download(Self.split))
        let resumed = try #require(hub.requests.last { $0.path.hasPrefix("/cdn/") })
        #expect(resumed.headers["range"] == "bytes=\(kept)-")
        #expect(try String(contentsOf: files[0], encoding: .utf8) == Self.rows)
        #expect(!FileManager.default.fileExists(atPath: incomplete.path))
    }

    @Test func aSplitOfSeveralFilesAppearsWholeOrNotAtAll() throws {
        let hub = try hub(), scratch = try Scratch()
        hub.add(
            repo: "EleutherAI/lambada_openai", revision: "refs/convert/parquet",
            .init(
                commit: Self.commit,
                files: [
                    "default/test/0000.jsonl": Array(Self.rows.utf8),
                    "default/test/0001.jsonl": Array("{\"text\": \"last\"}\n".utf8),
                ]))
        hub.setFault { $0.path.hasSuffix("/0001.jsonl") ? .init(status: 500) : nil }
        let env = environment(hub, scratch)
        #expect { try HubDownloader(environment: env).download(Self.split) } throws: {
            "\($0)".hasSuffix("/default/test/0001.jsonl: HTTP 500")
        }
        #expect(try HubCache.locateInAnySnapshot(Self.split, in: env.hubCache) == nil)
        #expect(!FileManager.default.fileExists(atPath: env.hubCache.appendingPathComponent("\(repoFolder)/refs").path))
        hub.setFault(nil)
        let files = try #require(try HubDownloader(environment: env).download(Self.split))
        #expect(files.map(\.lastPathComponent) == ["0000.jsonl", "0001.jsonl"])
    }

    @Test func contentThatIsNotItsETagIsDiscarded() throws {
        let hub = try hub(), scratch = try Scratch()
        let env = environment(hub, scratch)
        var wrong = Array(Self.rows.utf8)
        wrong[10] = UInt8(ascii: "X")
        let corrupted = wrong
        hub.setFault { $0.path.hasPrefix("/cdn/") ? .init(status: 200, body: corrupted) : nil }
        #expect { try HubDownloader(environment: env).download(Self.split) } throws: { "\($0)".contains("is not its ETag") }
        let blobs = try FileManager.default.contentsOfDirectory(atPath: env.hubCache.appendingPathComponent("\(repoFolder)/blobs").path)
        #expect(blobs.isEmpty, "\(blobs)")
    }

    @Test func offlineRefusesWithoutAnyRequest() throws {
        let hub = try hub(), scratch = try Scratch()
        #expect { try HubDownloader(environment: environment(hub, scratch, offline: true)).download(Self.split) } throws: {
            "\($0)".contains("HF_HUB_OFFLINE") && "\($0)".contains("EleutherAI/lambada_openai")
        }
        #expect(hub.requests.isEmpty)
    }

    @Test func sha256KnownAnswers() throws {
        let scratch = try Scratch()
        let empty = try scratch.write("empty", "")
        let abc = try scratch.write("abc", "abc")
        let long = try scratch.write("long", String(repeating: "a", count: 1_000_000))
        #expect(try HubDownloader.sha256(of: empty) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(try HubDownloader.sha256(of: abc) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(try HubDownloader.sha256(of: long) == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
    }
}
