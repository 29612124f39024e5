import MoEJSON

/// Tokenizer files are read with moe-eval's one JSON reader; its errors name the file they came from.
enum JSONParser {
    static func parse(_ data: [UInt8], file: String) throws -> JSONValue {
        do {
            return try JSONValue.parse(data)
        } catch let error as JSONParseError {
            throw TokenizerError(file: file, error.description)
        }
    }
}
