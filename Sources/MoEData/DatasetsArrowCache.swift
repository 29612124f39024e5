import Foundation

/// The `datasets` library's own cache of prepared splits (`HF_DATASETS_CACHE`), as its builders write it:
///
///     ORG___NAME/CONFIG/VERSION/HASH/NAME-SPLIT.arrow                    one Arrow IPC stream file
///     ORG___NAME/CONFIG/VERSION/HASH/NAME-SPLIT-00000-of-00003.arrow     or shards
///
/// NAME is the repo name in snake case; HASH depends on the data files the builder saw, which moe-eval
/// cannot recompute, so the most recently written complete folder holding the split is taken. Folders still
/// being prepared end in `.incomplete` and are never read.
public enum DatasetsArrowCache {
    public static func configFolder(_ split: HubDatasetSplit, in cache: URL) -> URL {
        let parts = split.repo.split(separator: "/").map(String.init)
        let name = snakeCase(parts.last ?? "")
        let folder = parts.count > 1 ? parts[0] + "___" + name : name
        return cache.appendingPathComponent(folder).appendingPathComponent(split.configName)
    }

    /// The split's Arrow files, nil when no prepared copy of it is cached.
    public static func locate(_ split: HubDatasetSplit, in cache: URL) throws -> [URL]? {
        let fm = FileManager.default
        let config = configFolder(split, in: cache)
        let name = snakeCase(String(split.repo.split(separator: "/").last ?? ""))
        var best: (date: Date, files: [URL])?
        for version in (try? fm.contentsOfDirectory(atPath: config.path)) ?? [] where !version.hasPrefix(".") {
            let versionFolder = config.appendingPathComponent(version)
            for hash in (try? fm.contentsOfDirectory(atPath: versionFolder.path)) ?? []
            where !hash.hasPrefix(".") && !hash.hasSuffix(".incomplete") && !hash.hasSuffix(".lock") {
                let folder = versionFolder.appendingPathComponent(hash)
                let names = ((try? fm.contentsOfDirectory(atPath: folder.path)) ?? []).filter {
                    isSplitFile($0, name: name, split: split.split)
                }
                guard !names.isEmpty else { continue }
                let date = (try? fm.attributesOfItem(atPath: folder.path)[.modificationDate] as? Date) ?? .distantPast
                if best == nil || date > best!.date {
                    best = (date, names.sorted().map { folder.appendingPathComponent($0) })
                }
            }
        }
        return best?.files
    }

    /// `NAME-SPLIT.arrow` or `NAME-SPLIT-NNNNN-of-NNNNN.arrow`.
    static func isSplitFile(_ file: String, name: String, split: String) -> Bool {
        let prefix = "\(name)-\(split)"
        guard file.hasPrefix(prefix), file.hasSuffix(".arrow") else { return false }
        let middle = file.dropFirst(prefix.count).dropLast(".arrow".count)
        if middle.isEmpty { return true }
        let pieces = middle.split(separator: "-", omittingEmptySubsequences: false)
        return pieces.count == 4 && pieces[0].isEmpty && pieces[2] == "of"
            && [pieces[1], pieces[3]].allSatisfy { $0.count == 5 && $0.allSatisfy(\.isASCII) && $0.allSatisfy(\.isNumber) }
    }

    /// `datasets.naming.camelcase_to_snakecase`: "SuperGLUE" → "super_glue", "ai2_arc" unchanged.
    static func snakeCase(_ name: String) -> String {
        let scalars = Array(name.unicodeScalars)
        var out = ""
        for (i, s) in scalars.enumerated() {
            let upper = CharacterSet.uppercaseLetters.contains(s)
            if upper && i > 0 {
                let previous = scalars[i - 1]
                let next = i + 1 < scalars.count ? scalars[i + 1] : nil
                let previousLowerOrDigit = CharacterSet.lowercaseLetters.contains(previous) || CharacterSet.decimalDigits.contains(previous)
                let startsWord =
                    CharacterSet.uppercaseLetters.contains(previous) && next.map { CharacterSet.lowercaseLetters.contains($0) } == true
                if previousLowerOrDigit || startsWord { out += "_" }
            }
            out.unicodeScalars.append(s)
        }
        return out.lowercased()
    }
}
