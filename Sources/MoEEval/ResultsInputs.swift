import Foundation

/// The results files that `compare` and `report` read from their arguments: files as given, folders resolved
/// to their latest results file (or all of them), and the whole list put in training-step order.
public enum ResultsInputs {
    public struct Resolved {
        public var files: [ResultsFile]
        /// The training step of each file (nil where neither the checkpoint path nor the file's path names one).
        public var steps: [Int?]
        /// What resolution did that a reader should know (folders expanded, order kept because a step is missing).
        public var notes: [String]
    }

    /// Loads `paths` (files or folders). A folder gives its newest results file (by the timestamp in
    /// `eval_results_<timestamp>.json`, else the name), or every results file with `all`; a folder with no results
    /// file of its own gives those of its subfolders (`outputs/eval/step-*/`). Files are then ordered by
    /// training step when every file has one.
    public static func resolve(_ paths: [String], all: Bool) throws -> Resolved {
        var files: [ResultsFile] = []
        var notes: [String] = []
        for path in paths {
            var isFolder: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isFolder), isFolder.boolValue else {
                files.append(try ResultsFile.load(URL(fileURLWithPath: path)))
                continue
            }
            var chosen = try resultsFiles(in: path, all: all)
            if chosen.isEmpty {
                let subfolders = try contents(of: path).filter { isDirectory($0) }
                for folder in subfolders { chosen += try resultsFiles(in: folder, all: all) }
            }
            guard !chosen.isEmpty else {
                throw ResultsFile.LoadError(description: "\(path): a folder without eval_results_*.json files (nor in its subfolders)")
            }
            notes.append("\(path): \(chosen.count) results file\(chosen.count == 1 ? "" : "s") (\(all ? "all" : "the latest per folder"))")
            files += try chosen.map { try ResultsFile.load(URL(fileURLWithPath: $0)) }
        }
        let steps = files.map(trainingStep)
        if steps.allSatisfy({ $0 != nil }) {
            let order = files.indices.sorted { (steps[$0]!, $0) < (steps[$1]!, $1) }
            return Resolved(files: order.map { files[$0] }, steps: order.map { steps[$0] }, notes: notes)
        }
        if files.count > 1, steps.contains(where: { $0 != nil }) {
            let missing = zip(files, steps).filter { $0.1 == nil }.map(\.0.path)
            notes.append(
                "no training step in \(missing.joined(separator: ", ")) (neither step-N in the checkpoint path nor in the file's path): files kept in the order given"
            )
        }
        return Resolved(files: files, steps: steps, notes: notes)
    }

    /// The training step of a results file: `step-N` / `step_N` / `stepN` in its checkpoint path (TorchTitan's
    /// folder names), else in its own path. The results file records no train_state, so the path is the source.
    public static func trainingStep(_ file: ResultsFile) -> Int? {
        for text in [file.checkpointDir, file.path].compactMap({ $0 }) {
            if let step = step(inPath: text) { return step }
        }
        return nil
    }

    /// The last path component of the form `step-N`, `step_N` or `stepN` (N decimal, at most 18 digits).
    public static func step(inPath path: String) -> Int? {
        for component in path.split(separator: "/").reversed() {
            let name = component.lowercased()
            guard name.hasPrefix("step") else { continue }
            var digits = name.dropFirst(4)
            if digits.first == "-" || digits.first == "_" { digits = digits.dropFirst() }
            guard !digits.isEmpty, digits.count <= 18, digits.allSatisfy(\.isASCII), digits.allSatisfy(\.isNumber) else { continue }
            return Int(digits)
        }
        return nil
    }

    static func contents(of folder: String) throws -> [String] {
        do {
            return try FileManager.default.contentsOfDirectory(atPath: folder).sorted().map { folder + "/" + $0 }
        } catch {
            throw ResultsFile.LoadError(description: "\(folder): the folder cannot be read")
        }
    }

    static func isDirectory(_ path: String) -> Bool {
        var flag: ObjCBool = false
        return FileManager.default.fileExists(atPath: path, isDirectory: &flag) && flag.boolValue
    }

    /// `eval_results_*.json` in one folder, newest last (the timestamp in the name sorts as text).
    static func resultsFiles(in folder: String, all: Bool) throws -> [String] {
        let names = try contents(of: folder).filter {
            let name = ($0 as NSString).lastPathComponent
            return name.hasPrefix("eval_results_") && name.hasSuffix(".json") && !isDirectory($0)
        }
        guard let newest = names.last else { return [] }
        return all ? names : [newest]
    }
}
