import Foundation
import MoECore

/// The CLI's face of `AtomicFile`: output files are written whole or not at all, and an existing file is
/// replaced only when the command has an `--overwrite` flag and it was given.
enum OutputFile {
    struct WriteError: Error, CustomStringConvertible { let description: String }

    /// `overwriteFlag`: the flag to suggest when the file exists (nil for commands that have none).
    static func write(_ data: Data, to url: URL, overwrite: Bool, overwriteFlag: String? = "--overwrite") throws {
        do {
            try AtomicFile.write(data, to: url, existing: overwrite ? .replace : .refuse)
        } catch let error as AtomicFileError where error.alreadyExists {
            throw WriteError(description: existsMessage(url, overwriteFlag: overwriteFlag))
        } catch let error as AtomicFileError {
            throw WriteError(description: error.description)
        }
    }

    static func existsMessage(_ url: URL, overwriteFlag: String?) -> String {
        "\(url.path) already exists; refusing to overwrite it (" + (overwriteFlag.map { "pass \($0), or " } ?? "") + "choose another path)"
    }
}
