import Foundation
import MoEJSON

/// Result files are written whole or not at all: into a temporary file beside the target, then renamed.
/// An existing file is never replaced unless the caller allows it.
enum OutputFile {
    struct WriteError: Error, CustomStringConvertible { let description: String }

    static func write(_ data: Data, to url: URL, overwrite: Bool = false) throws {
        let fm = FileManager.default
        if !overwrite && fm.fileExists(atPath: url.path) {
            throw WriteError(description: "\(url.path) already exists; refusing to overwrite it (pass --overwrite, or choose another path)")
        }
        let folder = url.deletingLastPathComponent()
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: folder.path, isDirectory: &isDir), isDir.boolValue else {
            throw WriteError(description: "cannot write \(url.path): folder \(folder.path) does not exist")
        }
        let temp = folder.appendingPathComponent(".\(url.lastPathComponent).\(getpid()).tmp")
        do {
            try data.write(to: temp)
        } catch {
            try? fm.removeItem(at: temp)
            throw WriteError(description: "cannot write \(url.path): \(error.localizedDescription)")
        }
        if rename(temp.path, url.path) != 0 {
            let reason = String(cString: strerror(errno))
            try? fm.removeItem(at: temp)
            throw WriteError(description: "cannot write \(url.path): \(reason)")
        }
    }
}

/// Compact JSON for large float arrays (JSONSerialization is slow and boxes every number).
struct JSONText {
    var text = ""

    mutating func raw(_ s: String) { text += s }

    mutating func string(_ s: String) { text += JSONValue.quoted(s) }

    /// Shortest decimal that reads back as the same Float; non-finite values become null.
    mutating func number(_ f: Float) { text += f.isFinite ? "\(f)" : "null" }
    mutating func number(_ i: Int) { text += String(i) }

    mutating func array<C: Collection>(_ items: C, _ element: (inout JSONText, C.Element) -> Void) {
        text += "["
        var first = true
        for item in items {
            if !first { text += "," }
            first = false
            element(&self, item)
        }
        text += "]"
    }
}
