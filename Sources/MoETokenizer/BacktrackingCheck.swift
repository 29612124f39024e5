/// Swift `Regex` backtracks without a limit and cannot be interrupted, so a pattern such as `(a+)+$` runs for
/// ever on a long run of `a`s (HF tokenizers' Oniguruma gives up after its retry limit instead). Patterns whose
/// running time can grow exponentially are refused when the tokenizer loads: a repeated group whose body can
/// match the same text in more than one way — it holds a variable quantifier (`+`, `*`, `?`, `{m,n}`) or an
/// alternation whose branches are not literal strings with distinct first characters. Atomic groups `(?>…)` and
/// possessive quantifiers (`++`, `*+`) never backtrack and are allowed. The check is conservative: it may refuse a
/// pattern that would in fact run fast, never the reverse for these shapes.
enum BacktrackingCheck {
    /// The part of `pattern` that can backtrack exponentially, or nil when none is found.
    static func exponentialGroup(in pattern: String) -> String? {
        let scalars = Array(pattern.unicodeScalars)
        var frames = [Frame(start: 0, atomic: false)]
        var lastAtom: Atom?
        var index = 0
        func bounds(at i: Int) -> (min: Int, max: Int?, end: Int)? {
            var j = i + 1
            var low = 0, high: Int? = nil, sawDigit = false, sawComma = false, highDigits = 0
            while j < scalars.count && scalars[j] != "}" {
                let s = scalars[j]
                if ("0"..."9").contains(s) {
                    let digit = Int(s.value - 48)
                    sawDigit = true
                    if sawComma {
                        high = min((high ?? 0) * 10 + digit, 1_000_000); highDigits += 1
                    } else {
                        low = min(low * 10 + digit, 1_000_000)
                    }
                } else if s == ",", !sawComma {
                    sawComma = true
                } else {
                    return nil
                }
                j += 1
            }
            guard j < scalars.count, sawDigit else { return nil }
            return (low, sawComma ? (highDigits > 0 ? high : nil) : low, j + 1)
        }

        /// Reads the quantifier at `index`; returns the offending text when it repeats an ambiguous group.
        func quantifier() -> String? {
            let minimum: Int, maximum: Int?
            if scalars[index] == "{", let b = bounds(at: index) {
                (minimum, maximum) = (b.min, b.max)
                index = b.end
            } else {
                let scalar = scalars[index]
                (minimum, maximum) = scalar == "*" ? (0, nil) : scalar == "+" ? (1, nil) : (0, 1)
                index += 1
            }
            var possessive = false
            if index < scalars.count && (scalars[index] == "?" || scalars[index] == "+") {
                possessive = scalars[index] == "+"
                index += 1
            }
            let repeats = maximum.map { $0 > 1 } ?? true
            if let atom = lastAtom, atom.ambiguous, !atom.atomic, !possessive, repeats {
                return String(String.UnicodeScalarView(scalars[atom.text.start..<index]))
            }
            if !possessive && minimum != maximum { frames[frames.count - 1].ambiguous = true }
            lastAtom = nil
            return nil
        }

        while index < scalars.count {
            let scalar = scalars[index]
            switch scalar {
            case "\\":
                let start = index
                let escaped: Unicode.Scalar? = index + 1 < scalars.count ? scalars[index + 1] : nil
                index = min(index + 2, scalars.count)
                if let escaped, "pPxk".unicodeScalars.contains(escaped), index < scalars.count,
                    scalars[index] == "{" || scalars[index] == "<"
                {
                    let close: Unicode.Scalar = scalars[index] == "{" ? "}" : ">"
                    while index < scalars.count && scalars[index] != close { index += 1 }
                    index = min(index + 1, scalars.count)
                }
                let plain = escaped.map { "rnt\\.^$|()[]{}*+?/-".unicodeScalars.contains($0) } ?? false
                lastAtom = Atom(plainFirst: plain ? escaped : nil, ambiguous: false, atomic: false, text: (start, index))
                frames[frames.count - 1].noteAtom(lastAtom!)
            case "[":
                let start = index
                index += 1
                if index < scalars.count && scalars[index] == "^" { index += 1 }
                if index < scalars.count && scalars[index] == "]" { index += 1 }
                var depth = 1
                while index < scalars.count && depth > 0 {
                    if scalars[index] == "\\" { index += 2; continue }
                    if scalars[index] == "[" { depth += 1 } else if scalars[index] == "]" { depth -= 1 }
                    index += 1
                }
                lastAtom = Atom(plainFirst: nil, ambiguous: false, atomic: false, text: (start, index))
                frames[frames.count - 1].noteAtom(lastAtom!)
            case "(":
                var atomic = false
                let start = index
                index += 1
                if index < scalars.count && scalars[index] == "?" {
                    atomic = index + 1 < scalars.count && scalars[index + 1] == ">"
                    // Skip the group's flags or name up to where its body starts.
                    while index < scalars.count
                        && !(scalars[index] == ":" || scalars[index] == ")" || scalars[index] == ">"
                            || scalars[index] == "=" || scalars[index] == "!")
                    {
                        index += 1
                    }
                    if index < scalars.count && scalars[index] != ")" { index += 1 }
                }
                frames.append(Frame(start: start, atomic: atomic))
                lastAtom = nil
            case "|":
                frames[frames.count - 1].newBranch()
                lastAtom = nil
                index += 1
            case ")" where frames.count > 1:
                index += 1
                let frame = frames.removeLast()
                lastAtom = Atom(
                    plainFirst: frame.singlePlainFirst, ambiguous: frame.isAmbiguous, atomic: frame.atomic,
                    text: (frame.start, index))
                frames[frames.count - 1].noteGroup(lastAtom!)
            case "*", "+", "?":
                if let hazard = quantifier() { return hazard }
            case "{" where bounds(at: index) != nil:
                if let hazard = quantifier() { return hazard }
            default:
                lastAtom = Atom(plainFirst: scalar, ambiguous: false, atomic: false, text: (index, index + 1))
                frames[frames.count - 1].noteAtom(lastAtom!)
                index += 1
            }
        }
        return nil
    }

    private struct Atom {
        /// The literal scalar the atom starts with (nil for classes and escapes that stand for sets).
        var plainFirst: Unicode.Scalar?
        var ambiguous: Bool
        var atomic: Bool
        var text: (start: Int, end: Int)
    }

    private struct Frame {
        let start: Int
        let atomic: Bool
        /// Holds a variable quantifier or an ambiguous group.
        var ambiguous = false
        /// First literal scalar of each branch (nil: the branch starts with a class, an escape or nothing).
        var branchFirsts: [Unicode.Scalar?] = []
        var branchStarted = false

        init(start: Int, atomic: Bool) {
            self.start = start
            self.atomic = atomic
        }

        mutating func noteAtom(_ atom: Atom) {
            if !branchStarted {
                branchFirsts.append(atom.plainFirst)
                branchStarted = true
            }
        }

        mutating func noteGroup(_ atom: Atom) {
            if atom.ambiguous && !atom.atomic { ambiguous = true }
            noteAtom(atom)
        }

        mutating func newBranch() {
            if !branchStarted { branchFirsts.append(nil) }
            branchStarted = false
        }

        var singlePlainFirst: Unicode.Scalar? { branchFirsts.count == 1 ? branchFirsts[0] : nil }

        /// Branches that can start on the same character let the engine retry one after the other.
        var isAmbiguous: Bool {
            if ambiguous { return true }
            var firsts = branchFirsts
            if !branchStarted && !firsts.isEmpty { firsts.append(nil) }
            guard firsts.count > 1 else { return false }
            var seen = Set<UInt32>()
            for first in firsts {
                guard let first, seen.insert(first.value).inserted else { return true }
            }
            return false
        }
    }
}
