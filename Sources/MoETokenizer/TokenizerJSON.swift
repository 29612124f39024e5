import MoEJSON

/// Reading tokenizer.json components. Every unsupported or malformed component throws a
/// `TokenizerError` naming its JSON path: a tokenizer that loads gives the library's ids.
struct ComponentReader {
    let file: String

    func failure(_ path: String, _ message: String) -> TokenizerError {
        TokenizerError(file: file, component: path, message)
    }

    func object(_ value: JSONValue, _ path: String) throws -> JSONObject {
        guard let object = value.objectValue else { throw failure(path, "expected an object, found \(value.typeName)") }
        return object
    }

    func type(of object: JSONObject, _ path: String) throws -> String {
        guard let value = object["type"] else { throw failure(path, "missing 'type'") }
        guard let type = value.stringValue else { throw failure(path, "'type' must be a string, found \(value.typeName)") }
        return type
    }

    func string(_ object: JSONObject, _ key: String, _ path: String, default fallback: String? = nil) throws -> String {
        guard let value = object[key], !value.isNull else {
            if let fallback { return fallback }
            throw failure(path, "missing '\(key)'")
        }
        guard let text = value.stringValue else { throw failure(path, "'\(key)' must be a string, found \(value.typeName)") }
        return text
    }

    func bool(_ object: JSONObject, _ key: String, _ path: String, default fallback: Bool? = nil) throws -> Bool {
        guard let value = object[key], !value.isNull else {
            if let fallback { return fallback }
            throw failure(path, "missing '\(key)'")
        }
        guard let flag = value.boolValue else { throw failure(path, "'\(key)' must be a boolean, found \(value.typeName)") }
        return flag
    }

    func int(_ object: JSONObject, _ key: String, _ path: String, default fallback: Int? = nil) throws -> Int {
        guard let value = object[key], !value.isNull else {
            if let fallback { return fallback }
            throw failure(path, "missing '\(key)'")
        }
        guard let number = value.intValue, number >= 0 else {
            throw failure(path, "'\(key)' must be a non-negative integer, found \(value.typeName)")
        }
        return number
    }

    func array(_ object: JSONObject, _ key: String, _ path: String) throws -> [JSONValue] {
        guard let value = object[key] else { throw failure(path, "missing '\(key)'") }
        guard let items = value.arrayValue else { throw failure(path, "'\(key)' must be an array, found \(value.typeName)") }
        return items
    }

    func singleScalar(_ text: String, _ key: String, _ path: String) throws -> UInt32 {
        var scalars = text.unicodeScalars.makeIterator()
        guard let first = scalars.next(), scalars.next() == nil else {
            throw failure(path, "'\(key)' must be a single character, found '\(text)'")
        }
        return first.value
    }

    func behavior(_ object: JSONObject, _ path: String, default fallback: SplitBehavior? = nil) throws -> SplitBehavior {
        let name = try string(object, "behavior", path, default: fallback?.rawValue)
        // The library serializes these in PascalCase; snake_case is what its Python constructors take.
        let pascal = name.split(separator: "_").map { $0.prefix(1).uppercased() + $0.dropFirst() }.joined()
        guard let behavior = SplitBehavior(rawValue: name) ?? SplitBehavior(rawValue: pascal) else {
            throw failure(path, "unknown split behavior '\(name)'")
        }
        return behavior
    }

    /// A `{"String": ...}` or `{"Regex": ...}` pattern.
    func pattern(_ object: JSONObject, _ path: String) throws -> any SplitMatcher {
        guard let value = object["pattern"] else { throw failure(path, "missing 'pattern'") }
        let pattern = try self.object(value, path + ".pattern")
        if let literal = pattern["String"]?.stringValue {
            return LiteralMatcher(literal: literal.unicodeScalars.map(\.value))
        }
        if let regex = pattern["Regex"]?.stringValue {
            do {
                return try SplitPatterns.regex(regex)
            } catch let error as RegexMatcher.RegexError {
                throw failure(path + ".pattern", "regex '\(error.pattern)' is not supported: \(error.reason)")
            }
        }
        throw failure(path + ".pattern", "expected {\"String\": ...} or {\"Regex\": ...}")
    }

    func prependScheme(_ object: JSONObject, _ path: String) throws -> PrependScheme {
        var scheme = PrependScheme.always
        if let value = object["prepend_scheme"], !value.isNull {
            guard let name = value.stringValue, let parsed = PrependScheme(rawValue: name) else {
                throw failure(path, "unknown prepend_scheme \(value)")
            }
            scheme = parsed
        }
        if let legacy = object["add_prefix_space"]?.boolValue, !legacy {
            if scheme != .never, object["prepend_scheme"] != nil {
                throw failure(path, "add_prefix_space does not match declared prepend_scheme")
            }
            scheme = .never
        }
        return scheme
    }

    // MARK: components

    func normalizer(_ value: JSONValue, _ path: String) throws -> Normalizer? {
        if value.isNull { return nil }
        let json = try object(value, path)
        let type = try self.type(of: json, path)
        switch type {
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Lowercase": return .lowercase
        case "StripAccents": return .stripAccents
        case "ByteLevel": return .byteLevel
        case "Prepend": return .prepend(try string(json, "prepend", path).unicodeScalars.map(\.value))
        case "Replace":
            return .replace(matcher: try pattern(json, path), content: try string(json, "content", path).unicodeScalars.map(\.value))
        case "Strip":
            return .strip(left: try bool(json, "strip_left", path), right: try bool(json, "strip_right", path))
        case "Sequence":
            let steps = try array(json, "normalizers", path)
            return .sequence(
                try steps.enumerated().compactMap { index, step in
                    try normalizer(step, "\(path).normalizers[\(index)]")
                })
        default:
            throw failure(path, "unsupported normalizer type '\(type)'")
        }
    }

    func preTokenizer(_ value: JSONValue, _ path: String) throws -> PreTokenizer? {
        if value.isNull { return nil }
        let json = try object(value, path)
        let type = try self.type(of: json, path)
        switch type {
        case "ByteLevel":
            return .byteLevel(
                addPrefixSpace: try bool(json, "add_prefix_space", path, default: true),
                useRegex: try bool(json, "use_regex", path, default: true))
        case "Split":
            return .split(
                matcher: try pattern(json, path), behavior: try behavior(json, path),
                invert: try bool(json, "invert", path, default: false))
        case "Digits":
            return .digits(individual: try bool(json, "individual_digits", path, default: false))
        case "Metaspace":
            let replacement = try singleScalar(try string(json, "replacement", path, default: "▁"), "replacement", path)
            return .metaspace(
                replacement: replacement, prependScheme: try prependScheme(json, path),
                split: try bool(json, "split", path, default: true))
        case "Whitespace": return .whitespace
        case "WhitespaceSplit": return .whitespaceSplit
        case "BertPreTokenizer": return .bert
        case "Punctuation": return .punctuation(behavior: try behavior(json, path, default: .isolated))
        case "CharDelimiterSplit":
            return .charDelimiter(try singleScalar(try string(json, "delimiter", path), "delimiter", path))
        case "Sequence":
            let steps = try array(json, "pretokenizers", path)
            return .sequence(
                try steps.enumerated().compactMap { index, step in
                    try preTokenizer(step, "\(path).pretokenizers[\(index)]")
                })
        default:
            throw failure(path, "unsupported pre-tokenizer type '\(type)'")
        }
    }

    func decoder(_ value: JSONValue, _ path: String) throws -> Decoder? {
        if value.isNull { return nil }
        let json = try object(value, path)
        let type = try self.type(of: json, path)
        switch type {
        case "ByteLevel": return .byteLevel
        case "ByteFallback": return .byteFallback
        case "Fuse": return .fuse
        case "Metaspace":
            let replacement = try singleScalar(try string(json, "replacement", path, default: "▁"), "replacement", path)
            return .metaspace(replacement: replacement, prependScheme: try prependScheme(json, path))
        case "Replace":
            return .replace(matcher: try pattern(json, path), content: try string(json, "content", path))
        case "Strip":
            return .strip(
                content: try singleScalar(try string(json, "content", path), "content", path),
                start: try int(json, "start", path), stop: try int(json, "stop", path))
        case "BPEDecoder":
            return .bpe(suffix: try string(json, "suffix", path, default: "</w>"))
        case "Sequence":
            let steps = try array(json, "decoders", path)
            return .sequence(
                try steps.enumerated().compactMap { index, step in
                    try decoder(step, "\(path).decoders[\(index)]")
                })
        default:
            throw failure(path, "unsupported decoder type '\(type)'")
        }
    }

    /// Template special tokens carry their own ids, so they need not be added tokens.
    func postProcessor(_ value: JSONValue, _ path: String) throws -> PostProcessor? {
        if value.isNull { return nil }
        let json = try object(value, path)
        let type = try self.type(of: json, path)
        switch type {
        case "ByteLevel": return .byteLevel
        case "BertProcessing", "RobertaProcessing":
            func pair(_ key: String) throws -> Int {
                guard let items = json[key]?.arrayValue, items.count == 2, items[0].stringValue != nil,
                    let id = items[1].intValue, id >= 0
                else {
                    throw failure(path, "'\(key)' must be a [token, id] pair")
                }
                return id
            }
            return .wrap(cls: try pair("cls"), sep: try pair("sep"))
        case "TemplateProcessing":
            let specials = try object(json["special_tokens"] ?? .object(JSONObject()), path + ".special_tokens")
            var elements: [[Int]?] = []
            for (index, item) in try array(json, "single", path).enumerated() {
                let itemPath = "\(path).single[\(index)]"
                let element = try object(item, itemPath)
                if let special = element["SpecialToken"] {
                    let name = try string(try object(special, itemPath), "id", itemPath)
                    guard let entry = specials[name]?.objectValue, let ids = entry["ids"]?.arrayValue else {
                        throw failure(itemPath, "special token '\(name)' is missing from special_tokens")
                    }
                    elements.append(
                        try ids.map { id in
                            guard let value = id.intValue, value >= 0 else { throw failure(itemPath, "invalid id \(id)") }
                            return value
                        })
                } else if let sequence = element["Sequence"] {
                    let name = try string(try object(sequence, itemPath), "id", itemPath)
                    guard name == "A" else { throw failure(itemPath, "the single template refers to sequence '\(name)'") }
                    elements.append(nil)
                } else {
                    throw failure(itemPath, "expected SpecialToken or Sequence")
                }
            }
            return .template(elements)
        case "Sequence":
            let steps = try array(json, "processors", path)
            return .sequence(
                try steps.enumerated().compactMap { index, step in
                    try postProcessor(step, "\(path).processors[\(index)]")
                })
        default:
            throw failure(path, "unsupported post-processor type '\(type)'")
        }
    }

    func addedToken(_ value: JSONValue, _ path: String, specialByDefault: Bool) throws -> AddedToken {
        let json = try object(value, path)
        return AddedToken(
            content: try string(json, "content", path),
            singleWord: try bool(json, "single_word", path, default: false),
            lstrip: try bool(json, "lstrip", path, default: false),
            rstrip: try bool(json, "rstrip", path, default: false),
            normalized: try bool(json, "normalized", path, default: !specialByDefault),
            special: try bool(json, "special", path, default: specialByDefault))
    }
}
