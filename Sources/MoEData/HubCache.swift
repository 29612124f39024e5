import Foundation

/// The Hugging Face Hub cache as huggingface_hub lays it out, read and written the same way:
///
///     datasets--ORG--NAME/refs/main                        the commit `main` pointed to when last fetched
///     datasets--ORG--NAME/refs/refs/convert/parquet        the same for the Hub's parquet conversion
///     datasets--ORG--NAME/snapshots/COMMIT/PATH            → ../../blobs/ETAG (relative symlink)
///     datasets--ORG--NAME/blobs/ETAG                       file content; ETAG.….incomplete while downloading
///     datasets--ORG--NAME/.no_exist/COMMIT/PATH            empty: the Hub said PATH does not exist
public enum HubCache {
    /// The revisions a task's split is looked for in: the repo's own files, then the parquet conversion.
    public static let revisions = ["main", "refs/convert/parquet"]

    /// `datasets--ORG--NAME`.
    public static func repoFolder(_ repo: String, in cache: URL) -> URL {
        cache.appendingPathComponent("datasets--" + repo.split(separator: "/").joined(separator: "--"))
    }

    /// `refs/REVISION`: a file holding the commit hash.
    public static func refFile(_ repo: String, revision: String, in cache: URL) -> URL {
        repoFolder(repo, in: cache).appendingPathComponent("refs").appendingPathComponent(revision)
    }

    /// The commit a cached revision points to, nil when the revision was never fetched.
    public static func commit(_ repo: String, revision: String, in cache: URL) throws -> String? {
        let ref = refFile(repo, revision: revision, in: cache)
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: ref.path, isDirectory: &isDirectory), !isDirectory.boolValue else { return nil }
        let attributes = try? FileManager.default.attributesOfItem(atPath: ref.path)
        if let size = attributes?[.size] as? Int, size > 256 {
            throw DataFileError(file: ref.path, "bad Hub cache ref: \(size) bytes where a commit hash belongs")
        }
        guard let data = try? Data(contentsOf: ref), let text = String(data: data, encoding: .utf8) else {
            throw DataFileError(file: ref.path, "bad Hub cache ref: cannot be read as text")
        }
        let commit = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard isCommitName(commit) else {
            throw DataFileError(file: ref.path, "bad Hub cache ref: '\(commit.prefix(80))' is not a commit hash")
        }
        return commit
    }

    /// A commit as a folder name: hex digits or word characters, nothing that could leave `snapshots/`.
    static func isCommitName(_ text: String) -> Bool {
        !text.isEmpty && text.count <= 128
            && text.unicodeScalars.allSatisfy { CharacterSet.alphanumerics.contains($0) || $0 == "-" || $0 == "_" }
            && text.unicodeScalars.allSatisfy(\.isASCII)
    }

    public static func snapshot(_ repo: String, commit: String, in cache: URL) -> URL {
        repoFolder(repo, in: cache).appendingPathComponent("snapshots").appendingPathComponent(commit)
    }

    /// The files of `split` in the cached `revision`, nil when that revision or split is not cached. A
    /// snapshot entry whose blob is missing (a broken symlink) or is not a regular file is an error that
    /// names it; half-downloaded blobs never appear in snapshots, so nothing partial is returned.
    public static func locate(_ split: HubDatasetSplit, revision: String, in cache: URL) throws -> [URL]? {
        guard let commit = try commit(split.repo, revision: revision, in: cache) else { return nil }
        return try locate(split, commit: commit, in: cache)
    }

    /// The split in any cached snapshot, newest first. The `datasets` library downloads files by commit hash,
    /// which leaves a snapshot but no ref; the file layout still tells the repo's own files from the parquet
    /// conversion.
    public static func locateInAnySnapshot(_ split: HubDatasetSplit, in cache: URL) throws -> [URL]? {
        let folder = repoFolder(split.repo, in: cache).appendingPathComponent("snapshots")
        let fm = FileManager.default
        let commits = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter(isCommitName).map { commit in
            (
                commit,
                (try? fm.attributesOfItem(atPath: folder.appendingPathComponent(commit).path)[.modificationDate] as? Date) ?? .distantPast
            )
        }
        for (commit, _) in commits.sorted(by: { $0.1 != $1.1 ? $0.1 > $1.1 : $0.0 < $1.0 }) {
            if let files = try locate(split, commit: commit, in: cache) { return files }
        }
        return nil
    }

    static func locate(_ split: HubDatasetSplit, commit: String, in cache: URL) throws -> [URL]? {
        let root = snapshot(split.repo, commit: commit, in: cache)
        let paths = snapshotFiles(root)
        let chosen = split.files(among: paths)
        guard !chosen.isEmpty else { return nil }
        return try chosen.map { relative in
            let url = root.appendingPathComponent(relative)
            let resolved = url.resolvingSymlinksInPath()
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: resolved.path, isDirectory: &isDirectory) else {
                throw DataFileError(
                    file: url.path, "bad Hub cache entry: its blob \(resolved.path) is missing (delete the entry or download again)")
            }
            guard !isDirectory.boolValue, FileManager.default.isReadableFile(atPath: resolved.path) else {
                throw DataFileError(file: url.path, "bad Hub cache entry: not a readable file")
            }
            return url
        }
    }

    /// Every path under a snapshot folder, relative to it ("/"-separated), symlinks included.
    static func snapshotFiles(_ root: URL) -> [String] {
        guard let enumerator = FileManager.default.enumerator(atPath: root.path) else { return [] }
        var paths: [String] = []
        while let path = enumerator.nextObject() as? String {
            var isDirectory: ObjCBool = false
            let exists = FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path, isDirectory: &isDirectory)
            // A dangling symlink does not "exist" but is kept, so that its missing blob is reported.
            if exists && isDirectory.boolValue { continue }
            paths.append(path)
        }
        return paths
    }
}
