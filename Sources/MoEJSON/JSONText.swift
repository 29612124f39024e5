/// Compact JSON written straight into text, for documents too large to hold as `JSONValue`s first (the logits of
/// `moe-eval forward`: batch × positions × vocabulary floats).
public struct JSONText {
    public var text = ""

    public init() {}

    public mutating func raw(_ s: String) { text += s }

    public mutating func string(_ s: String) { text += JSONValue.quoted(s) }

    /// Shortest decimal that reads back as the same Float; non-finite values become null.
    public mutating func number(_ f: Float) { text += f.isFinite ? "\(f)" : "null" }
    public mutating func number(_ i: Int) { text += String(i) }

    public mutating func array<C: Collection>(_ items: C, _ element: (inout JSONText, C.Element) -> Void) {
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
