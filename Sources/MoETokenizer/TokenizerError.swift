import Foundation

/// Why a tokenizer could not be loaded: one line naming the file and the component.
public struct TokenizerError: Error, CustomStringConvertible, LocalizedError, Equatable {
    /// The file (or other source) being read, e.g. `tokenizer.json`.
    public let file: String
    /// Where in the file, as a JSON path such as `pre_tokenizer.pretokenizers[2]`; empty for the file as a whole.
    public let component: String
    public let message: String

    public init(file: String, component: String = "", _ message: String) {
        self.file = file
        self.component = component
        self.message = message
    }

    public var description: String {
        component.isEmpty ? "\(file): \(message)" : "\(file): \(component): \(message)"
    }

    public var errorDescription: String? { description }
}
