/// tokenizers' post-processors, for a single sequence: they add special tokens around the ids
/// when `add_special_tokens` is on.
indirect enum PostProcessor: Sendable {
    /// TemplateProcessing's `single` template: each element is either the ids of a special token or
    /// the sequence itself (nil).
    case template([[Int]?])
    /// BertProcessing and RobertaProcessing: `cls ids sep`.
    case wrap(cls: Int, sep: Int)
    case byteLevel
    case sequence([PostProcessor])

    func process(_ ids: [Int], addSpecialTokens: Bool) -> [Int] {
        guard addSpecialTokens else { return ids }
        switch self {
        case .template(let elements):
            var result: [Int] = []
            result.reserveCapacity(ids.count + elements.count)
            for element in elements {
                if let special = element { result.append(contentsOf: special) } else { result.append(contentsOf: ids) }
            }
            return result
        case .wrap(let cls, let sep):
            return [cls] + ids + [sep]
        case .byteLevel:
            return ids
        case .sequence(let steps):
            var current = ids
            for step in steps { current = step.process(current, addSpecialTokens: true) }
            return current
        }
    }

    /// How many ids `process` adds (tokenizers' `added_tokens(is_pair: false)`), used by truncation.
    var addedTokenCount: Int {
        switch self {
        case .template(let elements): return elements.reduce(0) { $0 + ($1?.count ?? 0) }
        case .wrap: return 2
        case .byteLevel: return 0
        case .sequence(let steps): return steps.reduce(0) { $0 + $1.addedTokenCount }
        }
    }

    /// The ids the template puts before and after the sequence, for BOS/EOS discovery.
    var templateBoundaryIds: (first: Int?, last: Int?) {
        switch self {
        case .template(let elements):
            guard let sequenceIndex = elements.firstIndex(where: { $0 == nil }) else { return (nil, nil) }
            let before = elements[..<sequenceIndex].compactMap { $0 }.flatMap { $0 }
            let after = elements[(sequenceIndex + 1)...].compactMap { $0 }.flatMap { $0 }
            return (before.first, after.last)
        case .sequence(let steps):
            for step in steps {
                let ids = step.templateBoundaryIds
                if ids.first != nil || ids.last != nil { return ids }
            }
            return (nil, nil)
        case .wrap, .byteLevel:
            return (nil, nil)
        }
    }
}
