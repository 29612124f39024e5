import Foundation
import MoEJSON

/// The experts each MoE layer selected for one fixed token set, kept so that another checkpoint's routing of
/// the same tokens can be compared with it (results files carry it as `routed_experts`).
public struct RoutedExperts: Equatable, Sendable, Encodable {
    public struct Layer: Equatable, Sendable {
        public var layer: Int
        public var numExperts: Int
        public var topK: Int
        /// `[tokens, topK]`, best biased score first (slot 0 is the top-1 expert).
        public var experts: [Int32]
        /// Combine weights aligned with `experts`; only their ratios within a token are used.
        public var weights: [Float]

        public init(layer: Int, numExperts: Int, topK: Int, experts: [Int32], weights: [Float]) {
            self.layer = layer; self.numExperts = numExperts; self.topK = topK
            self.experts = experts; self.weights = weights
        }
    }

    public var tokenCount: Int
    /// `fnv1a64:<16 hex digits>` over the token ids (Int32 little-endian, in routing order).
    public var tokenSetHash: String
    public var layers: [Layer]

    public init(tokens: [Int32], layers: [Layer]) {
        tokenCount = tokens.count
        tokenSetHash = Self.hash(tokens)
        self.layers = layers
    }

    public func encode(to encoder: Encoder) throws { try fileForm().encode(to: encoder) }

    public init(tokenCount: Int, tokenSetHash: String, layers: [Layer]) {
        self.tokenCount = tokenCount
        self.tokenSetHash = tokenSetHash
        self.layers = layers
    }

    public static func hash(_ tokens: [Int32]) -> String {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for token in tokens {
            let bits = UInt32(bitPattern: token)
            for shift in stride(from: 0, to: 32, by: 8) { h = (h ^ UInt64((bits >> UInt32(shift)) & 0xFF)) &* 0x100_0000_01b3 }
        }
        return "fnv1a64:" + String(format: "%016llx", h)
    }

    public struct FormatError: Error, CustomStringConvertible, LocalizedError {
        public let description: String
        public var errorDescription: String? { description }
    }

    // MARK: File form

    /// One layer as a results file stores it.
    struct LayerRecord: Encodable {
        var numExperts: Int
        var topK: Int
        var idBytes: Int
        var experts: String
        var weights: String
        enum CodingKeys: String, CodingKey {
            case numExperts = "num_experts"
            case topK = "top_k"
            case idBytes = "id_bytes"
            case experts, weights
        }
    }

    struct FileForm: Encodable {
        var tokenSetHash: String
        var tokens: Int
        var layers: [String: LayerRecord]
        enum CodingKeys: String, CodingKey {
            case tokenSetHash = "token_set_hash"
            case tokens, layers
        }
    }

    /// Ids as uint8 (E ≤ 256) or uint16 little-endian, weights as uint8 round(255·w/Σw) per token, base64.
    func fileForm() -> FileForm {
        var records: [String: LayerRecord] = [:]
        for entry in layers {
            let wide = entry.numExperts > 256
            var ids: [UInt8] = []
            ids.reserveCapacity(entry.experts.count * (wide ? 2 : 1))
            for id in entry.experts {
                ids.append(UInt8(truncatingIfNeeded: id))
                if wide { ids.append(UInt8(truncatingIfNeeded: id >> 8)) }
            }
            var quantized: [UInt8] = []
            quantized.reserveCapacity(entry.weights.count)
            let k = entry.topK
            for t in 0..<(entry.weights.count / max(k, 1)) {
                let row = entry.weights[(t * k)..<((t + 1) * k)]
                let total = row.reduce(Float(0)) { $0 + max(0, $1) }
                for w in row {
                    let share = total > 0 && total.isFinite ? max(0, w) / total : 1 / Float(k)
                    quantized.append(UInt8((share * 255).rounded()))
                }
            }
            records[RoutingStatistics.key(forLayer: entry.layer)] = LayerRecord(
                numExperts: entry.numExperts, topK: entry.topK, idBytes: wide ? 2 : 1,
                experts: Data(ids).base64EncodedString(), weights: Data(quantized).base64EncodedString())
        }
        return FileForm(tokenSetHash: tokenSetHash, tokens: tokenCount, layers: records)
    }

    /// The `routed_experts` value as the results file holds it.
    public func jsonObject() throws -> JSONObject {
        guard case .object(let object) = try JSONValueEncoder().encode(self) else {
            throw FormatError(description: "routed_experts: did not encode as an object")
        }
        return object
    }

    /// Reads `routed_experts` from a results file; every size is checked against `tokens` before decoding.
    public static func parse(_ object: JSONObject, path: String) throws -> RoutedExperts {
        func fail(_ what: String) -> FormatError { FormatError(description: "\(path): routed_experts: \(what)") }
        guard let hash = object["token_set_hash"]?.stringValue, hash.hasPrefix("fnv1a64:") else {
            throw fail("no token_set_hash \"fnv1a64:…\"")
        }
        guard let tokens = object["tokens"]?.intValue, (1...(1 << 24)).contains(tokens) else {
            throw fail("tokens must be an integer in 1…16777216")
        }
        guard let layerObject = object["layers"]?.objectValue, !layerObject.isEmpty else { throw fail("no layers") }
        var layers: [Layer] = []
        for (key, value) in layerObject.entries {
            guard key.hasPrefix("layer_"), let index = Int(key.dropFirst(6)), index >= 0 else { throw fail("\(key) is not layer_<index>") }
            guard let entry = value.objectValue else { throw fail("\(key) is \(value.typeName), not an object") }
            guard let e = entry["num_experts"]?.intValue, (1...65536).contains(e) else {
                throw fail("\(key).num_experts must be in 1…65536")
            }
            guard let k = entry["top_k"]?.intValue, (1...e).contains(k) else { throw fail("\(key).top_k must be in 1…num_experts") }
            let width = e > 256 ? 2 : 1
            guard entry["id_bytes"]?.intValue == width else { throw fail("\(key).id_bytes must be \(width) for \(e) experts") }
            let (count, overflow) = tokens.multipliedReportingOverflow(by: k)
            guard !overflow, count <= 1 << 26 else { throw fail("\(key): \(tokens) tokens × top_k \(k) is too many") }
            guard let idText = entry["experts"]?.stringValue, let ids = Data(base64Encoded: idText) else {
                throw fail("\(key).experts is not base64")
            }
            guard ids.count == count * width else {
                throw fail("\(key).experts holds \(ids.count) bytes, expected \(count * width) (\(tokens) tokens × top_k \(k) × \(width))")
            }
            guard let weightText = entry["weights"]?.stringValue, let weights = Data(base64Encoded: weightText) else {
                throw fail("\(key).weights is not base64")
            }
            guard weights.count == count else { throw fail("\(key).weights holds \(weights.count) bytes, expected \(count)") }
            let bytes = [UInt8](ids)
            var experts = [Int32](repeating: 0, count: count)
            for i in 0..<count {
                let id = width == 1 ? Int32(bytes[i]) : Int32(bytes[2 * i]) | Int32(bytes[2 * i + 1]) << 8
                guard id < e else { throw fail("\(key).experts: id \(id) at position \(i) is outside 0..<\(e)") }
                experts[i] = id
            }
            layers.append(Layer(layer: index, numExperts: e, topK: k, experts: experts, weights: weights.map { Float($0) / 255 }))
        }
        return RoutedExperts(tokenCount: tokens, tokenSetHash: hash, layers: layers.sorted { $0.layer < $1.layer })
    }
}

/// Agreement of two routings of the same tokens, per MoE layer, each metric beside its value under
/// independent uniform random top-k routing (docs/METRICS.md, "Routing agreement").
public struct LayerAgreement: Codable, Equatable, Sendable {
    public var layer: Int
    public var tokens: Int
    public var numExperts: Int
    public var topK: Int
    /// Fraction of tokens whose top-1 expert is the same; chance 1/E.
    public var top1Agreement: Double
    public var top1AgreementChance: Double
    /// Mean |A_t ∩ B_t| / k; chance k/E.
    public var topKOverlap: Double
    public var topKOverlapChance: Double
    /// Mean ½(Σ_{i∈A_t∩B_t} â_{t,i} + Σ_{i∈A_t∩B_t} b̂_{t,i}), â, b̂ the weights normalised over each side's k picks; chance k/E.
    public var weightedOverlap: Double
    public var weightedOverlapChance: Double

    enum CodingKeys: String, CodingKey {
        case layer, tokens
        case numExperts = "num_experts"
        case topK = "top_k"
        case top1Agreement = "top1_agreement"
        case top1AgreementChance = "top1_agreement_chance"
        case topKOverlap = "topk_overlap"
        case topKOverlapChance = "topk_overlap_chance"
        case weightedOverlap = "weighted_overlap"
        case weightedOverlapChance = "weighted_overlap_chance"
    }
}

public struct RoutingAgreement: Codable, Equatable, Sendable {
    public var tokens: Int
    public var tokenSetHash: String
    public var layers: [LayerAgreement]
    /// Means over layers (each layer weighs the same).
    public var top1Agreement: Double
    public var top1AgreementChance: Double
    public var topKOverlap: Double
    public var topKOverlapChance: Double
    public var weightedOverlap: Double
    public var weightedOverlapChance: Double

    enum CodingKeys: String, CodingKey {
        case tokens
        case tokenSetHash = "token_set_hash"
        case layers
        case top1Agreement = "top1_agreement"
        case top1AgreementChance = "top1_agreement_chance"
        case topKOverlap = "topk_overlap"
        case topKOverlapChance = "topk_overlap_chance"
        case weightedOverlap = "weighted_overlap"
        case weightedOverlapChance = "weighted_overlap_chance"
    }

    public struct MismatchError: Error, CustomStringConvertible, LocalizedError {
        public let description: String
        public var errorDescription: String? { description }
    }

    /// Agreement of `b` with `a`: the same token set and, per layer, the same experts and top-k.
    public static func between(_ a: RoutedExperts, _ b: RoutedExperts) throws -> RoutingAgreement {
        guard a.tokenSetHash == b.tokenSetHash, a.tokenCount == b.tokenCount else {
            throw MismatchError(
                description:
                    "routed on different token sets (\(a.tokenCount) tokens \(a.tokenSetHash) vs \(b.tokenCount) tokens \(b.tokenSetHash))")
        }
        guard a.layers.map(\.layer) == b.layers.map(\.layer) else {
            throw MismatchError(description: "different MoE layers (\(a.layers.map(\.layer)) vs \(b.layers.map(\.layer)))")
        }
        var layers: [LayerAgreement] = []
        for (x, y) in zip(a.layers, b.layers) {
            guard x.numExperts == y.numExperts, x.topK == y.topK else {
                throw MismatchError(
                    description: "layer \(x.layer): \(x.numExperts) experts top-\(x.topK) vs \(y.numExperts) experts top-\(y.topK)")
            }
            let expected = a.tokenCount * x.topK
            guard x.experts.count == expected, y.experts.count == expected, x.weights.count == expected, y.weights.count == expected else {
                throw MismatchError(
                    description:
                        "layer \(x.layer): routing of \(x.experts.count / x.topK) and \(y.experts.count / y.topK) tokens, expected \(a.tokenCount)"
                )
            }
            layers.append(layer(x, y, tokens: a.tokenCount))
        }
        func mean(_ value: (LayerAgreement) -> Double) -> Double {
            layers.isEmpty ? 0 : layers.reduce(0) { $0 + value($1) } / Double(layers.count)
        }
        return RoutingAgreement(
            tokens: a.tokenCount, tokenSetHash: a.tokenSetHash, layers: layers,
            top1Agreement: mean(\.top1Agreement), top1AgreementChance: mean(\.top1AgreementChance),
            topKOverlap: mean(\.topKOverlap), topKOverlapChance: mean(\.topKOverlapChance),
            weightedOverlap: mean(\.weightedOverlap), weightedOverlapChance: mean(\.weightedOverlapChance))
    }

    static func layer(_ a: RoutedExperts.Layer, _ b: RoutedExperts.Layer, tokens: Int) -> LayerAgreement {
        let k = a.topK, e = a.numExperts
        var top1 = 0, shared = 0, weighted = 0.0
        for t in 0..<tokens {
            let base = t * k
            if a.experts[base] == b.experts[base] { top1 += 1 }
            let sumA = normaliser(a.weights[base..<(base + k)]), sumB = normaliser(b.weights[base..<(base + k)])
            var massA = 0.0, massB = 0.0
            for i in 0..<k {
                for j in 0..<k where a.experts[base + i] == b.experts[base + j] {
                    shared += 1
                    massA += sumA.map { Double(max(0, a.weights[base + i])) / $0 } ?? 1 / Double(k)
                    massB += sumB.map { Double(max(0, b.weights[base + j])) / $0 } ?? 1 / Double(k)
                }
            }
            weighted += (massA + massB) / 2
        }
        let n = Double(max(tokens, 1))
        return LayerAgreement(
            layer: a.layer, tokens: tokens, numExperts: e, topK: k,
            top1Agreement: Double(top1) / n, top1AgreementChance: 1 / Double(e),
            topKOverlap: Double(shared) / (n * Double(k)), topKOverlapChance: Double(k) / Double(e),
            weightedOverlap: weighted / n, weightedOverlapChance: Double(k) / Double(e))
    }

    /// Σ max(0, w) of one token's picks; nil when it is not a positive finite number (then each pick weighs 1/k).
    static func normaliser(_ weights: ArraySlice<Float>) -> Double? {
        let total = weights.reduce(0.0) { $0 + Double(max(0, $1)) }
        return total > 0 && total.isFinite ? total : nil
    }
}

extension Comparison {
    public struct AgreementRow: Codable, Sendable {
        public var from: String
        public var to: String
        public var agreement: RoutingAgreement
    }

    /// Consecutive files, and each earlier file with the last, where both carry `routed_experts` for the same tokens.
    static func agreementRows(_ inputs: [ResultsFile], labels: [String]) -> (rows: [AgreementRow], notes: [String]) {
        var notes: [String] = []
        let routed: [RoutedExperts?] = inputs.map { file in
            guard let object = file.root["routed_experts"]?.objectValue else { return nil }
            do { return try RoutedExperts.parse(object, path: file.path) } catch {
                notes.append("\(error)")
                return nil
            }
        }
        var pairs = inputs.indices.dropFirst().map { ($0 - 1, $0) }
        for first in inputs.indices.dropLast(2) { pairs.append((first, inputs.count - 1)) }
        var rows: [AgreementRow] = []
        for (a, b) in pairs {
            guard let x = routed[a], let y = routed[b] else { continue }
            do {
                rows.append(AgreementRow(from: labels[a], to: labels[b], agreement: try RoutingAgreement.between(x, y)))
            } catch {
                notes.append("routing agreement \(labels[a]) → \(labels[b]) not computed: \(error)")
            }
        }
        return (rows, notes)
    }

    func agreementText() -> String {
        guard !agreement.isEmpty else { return "" }
        var table = [["pair", "layer", "tokens", "top-1 agreement", "top-k overlap", "weighted overlap"]]
        func cell(_ value: Double, _ chance: Double) -> String {
            "\(Self.formatNumber(value)) (chance \(Self.formatNumber(chance)))"
        }
        for row in agreement {
            let a = row.agreement
            table.append([
                "\(row.from) → \(row.to)", "mean", String(a.tokens), cell(a.top1Agreement, a.top1AgreementChance),
                cell(a.topKOverlap, a.topKOverlapChance), cell(a.weightedOverlap, a.weightedOverlapChance),
            ])
            for layer in a.layers {
                table.append([
                    "", RoutingStatistics.key(forLayer: layer.layer), String(layer.tokens),
                    cell(layer.top1Agreement, layer.top1AgreementChance), cell(layer.topKOverlap, layer.topKOverlapChance),
                    cell(layer.weightedOverlap, layer.weightedOverlapChance),
                ])
            }
        }
        return "\nrouting agreement (the same tokens routed by both checkpoints; chance = uniform random routing)\n" + Self.layout(table)
    }
}

extension TrainingTrend {
    /// Top-k overlap between two results files' `routed_experts` and its chance level: nil when either file
    /// lacks them or they cover different tokens (the trend then leaves that point empty).
    public static let topKOverlap: AgreementMeasure = { a, b in
        guard let x = a.root["routed_experts"]?.objectValue, let y = b.root["routed_experts"]?.objectValue,
            let first = try? RoutedExperts.parse(x, path: a.path), let second = try? RoutedExperts.parse(y, path: b.path),
            let agreement = try? RoutingAgreement.between(first, second)
        else { return nil }
        return (agreement.topKOverlap, agreement.topKOverlapChance)
    }
}
