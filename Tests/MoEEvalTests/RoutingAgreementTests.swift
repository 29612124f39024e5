import Foundation
import MoEJSON
import Testing

@testable import MoEEval
@testable import MoEModels

/// Agreement metrics on a crafted table, the results-file form of routed ids, and compare's use of it.
@Suite struct RoutingAgreementTests {
    /// E = 4, top-2, two tokens. A: t0 {0, 1} (0.75, 0.25), t1 {2, 3} (0.5, 0.5); B: t0 {1, 0} (0.6, 0.4), t1 {2, 0} (0.9, 0.1).
    static let a = RoutedExperts(
        tokens: [10, 11],
        layers: [
            .init(layer: 1, numExperts: 4, topK: 2, experts: [0, 1, 2, 3], weights: [0.75, 0.25, 0.5, 0.5])
        ])
    static let b = RoutedExperts(
        tokens: [10, 11],
        layers: [
            .init(layer: 1, numExperts: 4, topK: 2, experts: [1, 0, 2, 0], weights: [0.6, 0.4, 0.9, 0.1])
        ])

    @Test func agreementByHand() throws {
        let agreement = try RoutingAgreement.between(Self.a, Self.b)
        let layer = try #require(agreement.layers.first)
        // Top-1: 0 vs 1, 2 vs 2 → 1/2. Overlap: 2/2 and 1/2 → 3/4. Weighted: t0 all mass shared (1);
        // t1 shares expert 2: A puts 0.5 on it, B 0.9 → 0.7; mean 0.85.
        #expect(layer.top1Agreement == 0.5)
        #expect(layer.topKOverlap == 0.75)
        #expect(abs(layer.weightedOverlap - 0.85) < 1e-7)
        #expect(layer.top1AgreementChance == 0.25)
        #expect(layer.topKOverlapChance == 0.5)
        #expect(layer.weightedOverlapChance == 0.5)
        #expect(agreement.top1Agreement == 0.5)
    }

    @Test func selfAgreementIsExactlyOne() throws {
        let agreement = try RoutingAgreement.between(Self.b, Self.b)
        #expect(agreement.top1Agreement == 1)
        #expect(agreement.topKOverlap == 1)
        #expect(agreement.weightedOverlap == 1)
    }

    /// Uniform random routing of many tokens lands on the derived chance values.
    @Test func independentRandomRoutingSitsAtChance() throws {
        var rng = SplitMix64(seed: 3)
        func random(_ tokens: Int) -> RoutedExperts.Layer {
            var ids: [Int32] = [], weights: [Float] = []
            for _ in 0..<tokens {
                var experts = Array(0..<8).map(Int32.init)
                for slot in 0..<2 { experts.swapAt(slot, slot + Int(rng.next() % UInt64(8 - slot))) }
                ids += experts.prefix(2)
                let w = Float(rng.next() % 1000) / 1000
                weights += [w, 1 - w]
            }
            return .init(layer: 0, numExperts: 8, topK: 2, experts: ids, weights: weights)
        }
        let tokens = [Int32](repeating: 1, count: 40_000)
        let agreement = try RoutingAgreement.between(
            RoutedExperts(tokens: tokens, layers: [random(tokens.count)]),
            RoutedExperts(tokens: tokens, layers: [random(tokens.count)]))
        // Standard errors with 40,000 tokens are below 0.003.
        #expect(abs(agreement.top1Agreement - 0.125) < 0.01)
        #expect(abs(agreement.topKOverlap - 0.25) < 0.01)
        #expect(abs(agreement.weightedOverlap - 0.25) < 0.01)
    }

    @Test func differentTokenSetsOrShapesAreRefused() {
        let other = RoutedExperts(tokens: [10, 12], layers: Self.b.layers)
        #expect(throws: RoutingAgreement.MismatchError.self) { try RoutingAgreement.between(Self.a, other) }
        var wide = Self.b
        wide.layers[0].numExperts = 8
        #expect(throws: RoutingAgreement.MismatchError.self) { try RoutingAgreement.between(Self.a, wide) }
    }

    static func parse(_ object: JSONObject) throws -> RoutedExperts {
        // Through the text form, as compare reads it from a file.
        guard case .object(let root) = try JSONValue.parse(JSONValue.object(object).serialized) else {
            throw RoutedExperts.FormatError(description: "not an object")
        }
        return try RoutedExperts.parse(root, path: "file.json")
    }

    @Test func fileFormRoundTripsIdsAndQuantisesWeights() throws {
        let back = try Self.parse(try Self.b.jsonObject())
        #expect(back.tokenSetHash == Self.b.tokenSetHash)
        #expect(back.tokenCount == 2)
        #expect(back.layers[0].experts == Self.b.layers[0].experts)
        for (got, want) in zip(back.layers[0].weights, [0.6, 0.4, 0.9, 0.1]) { #expect(abs(Double(got) - want) < 0.5 / 255 + 1e-6) }
        // Agreement from the file form moves the weighted overlap by at most the quantisation step.
        let fromFile = try RoutingAgreement.between(try Self.parse(try Self.a.jsonObject()), back)
        #expect(fromFile.top1Agreement == 0.5)
        #expect(abs(fromFile.weightedOverlap - 0.85) < 0.01)
        // More than 256 experts are stored as two bytes per id.
        let wide = RoutedExperts(tokens: [1], layers: [.init(layer: 3, numExperts: 300, topK: 2, experts: [299, 7], weights: [1, 1])])
        #expect(try Self.parse(try wide.jsonObject()).layers[0].experts == [299, 7])
    }

    @Test func malformedFileFormNamesTheField() throws {
        var object = try Self.a.jsonObject()
        var layers = try #require(object["layers"]?.objectValue)
        var layer = try #require(layers["layer_1"]?.objectValue)
        layer.set("experts", .string(Data([0, 1, 2]).base64EncodedString()))
        layers.set("layer_1", .object(layer))
        object.set("layers", .object(layers))
        do {
            _ = try Self.parse(object)
            Issue.record("a short experts field was accepted")
        } catch {
            #expect("\(error)".contains("file.json: routed_experts: layer_1.experts holds 3 bytes, expected 4"))
        }
        layer.set("experts", .string(Data([0, 1, 9, 3]).base64EncodedString()))
        layers.set("layer_1", .object(layer))
        object.set("layers", .object(layers))
        #expect(throws: RoutedExperts.FormatError.self) { try Self.parse(object) }
        object.set("tokens", .int(1 << 40))
        #expect(throws: RoutedExperts.FormatError.self) { try Self.parse(object) }
    }

    /// compare shows agreement only for files routed on the same token set.
    @Test func compareShowsAgreementForTheSameTokens() throws {
        func file(_ routed: RoutedExperts, _ name: String) throws -> ResultsFile {
            let object: JSONObject = [
                "routing_stats": .object(["aggregate": .object(["num_moe_layers": .int(1)])]),
                "moe_eval": .object(["tool": .string("moe-eval")]), "routed_experts": .object(try routed.jsonObject()),
            ]
            return try ResultsFile.parse(Data(JSONValue.object(object).serialized.utf8), path: name)
        }
        let comparison = Comparison([try file(Self.a, "a.json"), try file(Self.b, "b.json")])
        let row = try #require(comparison.agreement.first)
        #expect(row.from == "A" && row.to == "B")
        #expect(row.agreement.top1Agreement == 0.5)
        #expect(comparison.text().contains("routing agreement"))
        let other = RoutedExperts(tokens: [10, 12], layers: Self.b.layers)
        let mismatched = Comparison([try file(Self.a, "a.json"), try file(other, "c.json")])
        #expect(mismatched.agreement.isEmpty)
        #expect(mismatched.notes.contains { $0.contains("different token sets") })
    }
}
