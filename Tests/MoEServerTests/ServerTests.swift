import Foundation
import Hummingbird
import HummingbirdTesting
import MoEJSON
import MoEModels
import MoETokenizer
import Testing

@testable import MoEServer

/// One fixture model (TorchTitan 0.2.2, vocab 160, max_seq_len 64) and TorchTitan's test tokenizer
/// (byte-level, no merges: ASCII text becomes ids < 128), shared by every test through one engine,
/// because the model must not run two forwards at once.
enum ServerFixture {
    static let variant = "v022_softmax_basic"

    static let repoRoot: URL = {
        var dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
        while dir.path != "/" && !FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            dir = dir.deletingLastPathComponent()
        }
        return dir
    }()

    static var fixtureFolder: URL {
        repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/dsv3/\(variant)")
    }

    static var tokenizerFolder: URL {
        repoRoot.deletingLastPathComponent().appendingPathComponent("shared/data/tokenizers/torchtitan_test_tokenizer")
    }

    static let limits: ServerLimits = {
        var limits = ServerLimits()
        limits.maxBodyBytes = 32 * 1024
        limits.maxPromptsPerRequest = 8
        return limits
    }()

    static let engine: Result<CompletionEngine, any Error> = Result {
        let loaded = try ModelLoader.load(
            ModelSpec(
                checkpoint: fixtureFolder.appendingPathComponent("checkpoint"),
                modelArgs: fixtureFolder.appendingPathComponent("model_args.json")))
        let tokenizer = try Tokenizer.load(from: tokenizerFolder)
        return CompletionEngine(model: loaded.model, tokenizer: tokenizer, modelName: "fixture", limits: limits)
    }

    /// The prompts TorchTitan ran, and its logits for them: [row][position][vocab].
    static func reference() throws -> (tokens: [[Int]], logits: [[[Double]]]) {
        let tokens =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixtureFolder.appendingPathComponent("tokens.json"))) as? [String: Any]
        let expected =
            try JSONSerialization.jsonObject(with: Data(contentsOf: fixtureFolder.appendingPathComponent("expected.json")))
            as? [String: Any]
        return (try #require(tokens?["tokens"] as? [[Int]]), try #require(expected?["logits"] as? [[[Double]]]))
    }

    static func withClient(_ body: @Sendable (any TestClientProtocol) async throws -> Void) async throws {
        let engine = try engine.get()
        let app = Application(router: CompletionServer.router(engine: engine))
        try await app.test(.router, body)
    }
}

/// log-softmax of TorchTitan's logits, computed here independently of the server.
func referenceLogSoftmax(_ row: [Double]) -> [Double] {
    let maxValue = row.max()!
    let logNormalizer = maxValue + log(row.reduce(0) { $0 + exp($1 - maxValue) })
    return row.map { $0 - logNormalizer }
}

/// Sends a JSON body and parses the answer with Foundation's JSONSerialization (not the server's reader).
@discardableResult
func post(
    _ client: any TestClientProtocol, _ uri: String, json: Any, expect status: HTTPResponse.Status = .ok,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws -> [String: Any] {
    let data = try JSONSerialization.data(withJSONObject: json)
    return try await send(client, uri, method: .post, body: data, expect: status, sourceLocation: sourceLocation)
}

@discardableResult
func send(
    _ client: any TestClientProtocol, _ uri: String, method: HTTPRequest.Method, body: Data? = nil,
    expect status: HTTPResponse.Status = .ok, sourceLocation: SourceLocation = #_sourceLocation
) async throws -> [String: Any] {
    try await client.execute(
        uri: uri, method: method, headers: [.contentType: "application/json"],
        body: body.map { ByteBuffer(bytes: $0) }
    ) { response in
        let text = String(buffer: response.body)
        #expect(response.status == status, "\(method) \(uri) → \(response.status): \(text)", sourceLocation: sourceLocation)
        #expect(response.headers[.contentType] == "application/json", sourceLocation: sourceLocation)
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return try #require(object, "not a JSON object: \(text)", sourceLocation: sourceLocation)
    }
}

/// The harness's own reading of a loglikelihood response (lm-eval 0.4.13 `parse_logprobs`).
func harnessLoglikelihood(_ choice: [String: Any], contextLength: Int) throws -> (logprob: Double, isGreedy: Bool) {
    let logprobs = try #require(choice["logprobs"] as? [String: Any])
    let tokenLogprobs = try #require(logprobs["token_logprobs"] as? [Any])
    let top = try #require(logprobs["top_logprobs"] as? [Any])
    let continuation = tokenLogprobs[contextLength..<(tokenLogprobs.count - 1)].map { $0 as! Double }
    var greedy = true
    for (value, alternatives) in zip(continuation, top[contextLength..<(top.count - 1)]) {
        let best = try #require((alternatives as? [String: Double])?.values.max())
        if value != best { greedy = false; break }
    }
    return (continuation.reduce(0, +), greedy)
}

@Suite struct EndpointTests {
    @Test func healthAndModels() async throws {
        try await ServerFixture.withClient { client in
            let health = try await send(client, "/health", method: .get)
            #expect(health["status"] as? String == "ok")
            let models = try await send(client, "/v1/models", method: .get)
            let data = try #require(models["data"] as? [[String: Any]])
            #expect(data.count == 1 && data[0]["id"] as? String == "fixture")
            #expect(data[0]["max_model_len"] as? Int == 64)
        }
    }

    @Test func tokenizerEndpointsServeTheHarness() async throws {
        let tokenizer = try Tokenizer.load(from: ServerFixture.tokenizerFolder)
        try await ServerFixture.withClient { client in
            let info = try await send(client, "/tokenizer_info", method: .get)
            let eos = try #require(info["eos_token"] as? String)
            let bos = try #require(info["bos_token"] as? String)
            #expect(eos == "<|end_of_text|>" && bos == "<|begin_of_text|>")

            // lm-eval finds the EOS/BOS ids by tokenizing their text without special tokens.
            let eosIds = try await post(client, "/tokenize", json: ["prompt": eos, "add_special_tokens": false])
            #expect(eosIds["tokens"] as? [Int] == [try #require(tokenizer.eosTokenId)])

            // Printable ASCII without spaces: this tokenizer has no ids for the byte-level forms of " " and "\n".
            let text = "Question:2+2=?Answer:4"
            let plain = try await post(client, "/tokenize", json: ["prompt": text, "add_special_tokens": false])
            let ids = try #require(plain["tokens"] as? [Int])
            #expect(ids == tokenizer.encode(text, addSpecialTokens: false))
            #expect(ids == text.utf8.map(Int.init), "TorchTitan's test tokenizer maps ASCII bytes to their own ids")
            let withSpecial = try await post(client, "/tokenize", json: ["prompt": text])
            #expect(withSpecial["tokens"] as? [Int] == tokenizer.encode(text, addSpecialTokens: true))

            let back = try await post(client, "/detokenize", json: ["tokens": ids])
            #expect(back["prompt"] as? String == text)
            try await post(client, "/detokenize", json: ["tokens": [1, "x"]], expect: .badRequest)
            try await post(client, "/detokenize", json: ["tokens": [tokenizer.vocabSize]], expect: .badRequest)
            try await post(client, "/tokenize", json: ["text": text], expect: .badRequest)
        }
    }

    @Test func unknownRouteIsAnOpenAIError() async throws {
        try await ServerFixture.withClient { client in
            let answer = try await send(client, "/v1/chat/completions", method: .post, body: Data("{}".utf8), expect: .notFound)
            let error = try #require(answer["error"] as? [String: Any])
            #expect((error["message"] as? String)?.contains("/v1/completions") == true)
        }
    }
}

@Suite struct CompletionContractTests {
    /// Largest |Δ logprob| between separate forwards of the same tokens (fp32 rounding of differently split GEMMs;
    /// observed ≤ 2e-6 when other work shares the process).
    static let separateForwardTolerance = 1e-5

    /// What lm-eval sends for every loglikelihood request, checked against TorchTitan's own logits.
    @Test func echoLogprobsMatchTorchTitanAndTheHarnessContract() async throws {
        let reference = try ServerFixture.reference()
        try await ServerFixture.withClient { client in
            for (row, prompt) in reference.tokens.enumerated() {
                let answer = try await post(
                    client, "/v1/completions",
                    json: [
                        "model": "fixture", "prompt": [prompt], "temperature": 0, "max_tokens": 1,
                        "logprobs": 1, "seed": 1234, "echo": true,
                    ] as [String: Any])
                let choices = try #require(answer["choices"] as? [[String: Any]])
                #expect(choices.count == 1 && choices[0]["index"] as? Int == 0)
                let logprobs = try #require(choices[0]["logprobs"] as? [String: Any])
                let tokenLogprobs = try #require(logprobs["token_logprobs"] as? [Any])
                let top = try #require(logprobs["top_logprobs"] as? [Any])
                #expect(tokenLogprobs.count == prompt.count + 1 && top.count == prompt.count + 1)
                #expect(tokenLogprobs[0] is NSNull && top[0] is NSNull)
                #expect((logprobs["tokens"] as? [Any])?.count == prompt.count + 1)

                let expected = reference.logits[row].map(referenceLogSoftmax)
                for i in 1...prompt.count {
                    let value = try #require(tokenLogprobs[i] as? Double)
                    let alternatives = try #require(top[i] as? [String: Double])
                    #expect(alternatives.count == 1)
                    let best = try #require(alternatives.values.max())
                    let referenceBest = expected[i - 1].max()!
                    #expect(abs(best - referenceBest) < 3e-4, "row \(row) position \(i): top \(best) vs TorchTitan \(referenceBest)")
                    if i < prompt.count {
                        let want = expected[i - 1][prompt[i]]
                        #expect(abs(value - want) < 3e-4, "row \(row) position \(i): \(value) vs TorchTitan \(want)")
                        let referenceGreedy = expected[i - 1].firstIndex(of: referenceBest) == prompt[i]
                        #expect((value == best) == referenceGreedy, "row \(row) position \(i): greedy flag")
                    } else {
                        // The generated token is the argmax: the same float in both arrays.
                        #expect(value == best)
                    }
                }
                let contextLength = 5
                let (sum, _) = try harnessLoglikelihood(choices[0], contextLength: contextLength)
                let want = (contextLength..<prompt.count).reduce(0.0) { $0 + expected[$1 - 1][prompt[$1]] }
                #expect(abs(sum - want) < 1e-3, "row \(row): harness sum \(sum) vs TorchTitan \(want)")
            }
        }
    }

    @Test func maxTokensZeroScoresThePromptOnly() async throws {
        let prompt = try ServerFixture.reference().tokens[0]
        try await ServerFixture.withClient { client in
            let echoed = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt, "max_tokens": 0, "logprobs": 2, "echo": true,
                ] as [String: Any])
            let choice = try #require((echoed["choices"] as? [[String: Any]])?.first)
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let values = try #require(logprobs["token_logprobs"] as? [Any])
            #expect(values.count == prompt.count && values[0] is NSNull)
            let top = try #require(logprobs["top_logprobs"] as? [Any])
            #expect(top.dropFirst().allSatisfy { ($0 as? [String: Double])?.count == 2 })
            #expect((echoed["usage"] as? [String: Any])?["completion_tokens"] as? Int == 0)

            // Compared with max_tokens 1: the same prompt entries, and one more at the end.
            let one = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt, "max_tokens": 1, "logprobs": 2, "echo": true,
                ] as [String: Any])
            let oneValues = try #require(
                ((one["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])
            #expect(oneValues.count == prompt.count + 1)
            // Separate forwards may split their GEMMs differently across threads (the split follows the load and
            // the batch), which rounds fp32 sums differently: equal to well within the harness agreement's 1e-4.
            for i in 1..<prompt.count {
                let a = try #require(oneValues[i] as? Double), b = try #require(values[i] as? Double)
                #expect(abs(a - b) <= Self.separateForwardTolerance, "position \(i): \(a) vs \(b)")
            }

            let silent = try await post(
                client, "/v1/completions", json: ["prompt": prompt, "max_tokens": 0, "logprobs": 1] as [String: Any])
            let silentChoice = try #require((silent["choices"] as? [[String: Any]])?.first)
            #expect(silentChoice["text"] as? String == "")
            #expect(((silentChoice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])?.isEmpty == true)
        }
    }

    /// Greedy generation through the KV cache gives the tokens that re-scoring the whole sequence calls greedy.
    @Test func greedyGenerationAgreesWithRescoring() async throws {
        let prompt = Array(try ServerFixture.reference().tokens[1].prefix(6))
        let tokenizer = try Tokenizer.load(from: ServerFixture.tokenizerFolder)
        try await ServerFixture.withClient { client in
            let generated = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt, "max_tokens": 8, "logprobs": 3, "seed": 1, "return_tokens_as_token_ids": true,
                ] as [String: Any])
            let choice = try #require((generated["choices"] as? [[String: Any]])?.first)
            #expect(choice["finish_reason"] as? String == "length")
            let logprobs = try #require(choice["logprobs"] as? [String: Any])
            let values = try #require(logprobs["token_logprobs"] as? [Double])
            let tops = try #require(logprobs["top_logprobs"] as? [[String: Double]])
            #expect(values.count == 8 && tops.count == 8)
            let tokens = try #require(logprobs["tokens"] as? [String])
            let newIds = try tokens.map { try #require($0.hasPrefix("token_id:") ? Int($0.dropFirst(9)) : nil) }
            for (k, (value, top)) in zip(values, tops).enumerated() {
                #expect(top.count == 3)
                #expect(value == top.values.max())
                #expect(top["token_id:\(newIds[k])"] == value)
            }
            #expect(choice["text"] as? String == tokenizer.decode(newIds, skipSpecialTokens: true))

            let rescored = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt + newIds, "max_tokens": 0, "logprobs": 1, "echo": true,
                ] as [String: Any])
            let rescoredChoice = try #require((rescored["choices"] as? [[String: Any]])?.first)
            let (_, greedy) = try harnessLoglikelihood(rescoredChoice.withExtraPosition(), contextLength: prompt.count)
            #expect(greedy, "every generated token is the argmax when the full sequence is re-scored")
            let full = try #require((rescoredChoice["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any])
            for (k, value) in values.enumerated() {
                let again = try #require(full[prompt.count + k] as? Double)
                #expect(abs(again - value) < 1e-4, "generated token \(k): cached \(value) vs full forward \(again)")
            }
        }
    }

    @Test func stopStringsAreAppliedServerSide() async throws {
        try await ServerFixture.withClient { client in
            let prompt = "Question: what is the answer?\nAnswer:"
            let free = try await post(client, "/v1/completions", json: ["prompt": prompt, "max_tokens": 24] as [String: Any])
            let freeChoice = try #require((free["choices"] as? [[String: Any]])?.first)
            let text = try #require(freeChoice["text"] as? String)
            #expect(freeChoice["finish_reason"] as? String == "length")
            let scalars = Array(text.unicodeScalars)
            let stopAt = try #require(
                scalars.indices.dropFirst().first { scalars[$0].isASCII },
                "the fixture's continuation has no ASCII character to stop at: \(text.debugDescription)")
            let stop = String(scalars[stopAt])
            let cut = scalars.firstIndex(of: scalars[stopAt])!
            let stopped = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt, "max_tokens": 24, "stop": ["never-generated", stop],
                ] as [String: Any])
            let stoppedChoice = try #require((stopped["choices"] as? [[String: Any]])?.first)
            #expect(stoppedChoice["finish_reason"] as? String == "stop")
            #expect(stoppedChoice["text"] as? String == String(String.UnicodeScalarView(scalars[..<cut])))
            #expect((stoppedChoice["text"] as? String)?.contains(stop) == false)

            let echoed = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": prompt, "max_tokens": 24, "stop": stop, "echo": true,
                ] as [String: Any])
            let echoedText = (echoed["choices"] as? [[String: Any]])?.first?["text"] as? String
            #expect(
                echoedText == prompt + String(String.UnicodeScalarView(scalars[..<cut])),
                "the stop applies to the continuation, not the echoed prompt")

            let unmatched = try await post(
                client, "/v1/completions", json: ["prompt": prompt, "max_tokens": 24, "stop": "never-generated"] as [String: Any])
            #expect((unmatched["choices"] as? [[String: Any]])?.first?["text"] as? String == text)
        }
    }

    @Test func batchedPromptsAnswerInOrder() async throws {
        let reference = try ServerFixture.reference()
        try await ServerFixture.withClient { client in
            let batch = try await post(
                client, "/v1/completions",
                json: [
                    "prompt": reference.tokens, "max_tokens": 1, "logprobs": 1, "echo": true,
                ] as [String: Any])
            let choices = try #require(batch["choices"] as? [[String: Any]])
            #expect(choices.map { $0["index"] as? Int } == [0, 1])
            for (row, prompt) in reference.tokens.enumerated() {
                let single = try await post(
                    client, "/v1/completions",
                    json: [
                        "prompt": [prompt], "max_tokens": 1, "logprobs": 1, "echo": true,
                    ] as [String: Any])
                let one = try #require((single["choices"] as? [[String: Any]])?.first)
                let a = (choices[row]["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any]
                let b = (one["logprobs"] as? [String: Any])?["token_logprobs"] as? [Any]
                let x = a?.compactMap { $0 as? Double } ?? [], y = b?.compactMap { $0 as? Double } ?? []
                #expect(x.count == y.count && !x.isEmpty)
                #expect(zip(x, y).allSatisfy { abs($0 - $1) <= Self.separateForwardTolerance }, "\(x) vs \(y)")
            }
            let texts = try await post(client, "/v1/completions", json: ["prompt": ["ab", "cd"], "max_tokens": 2] as [String: Any])
            #expect((texts["choices"] as? [[String: Any]])?.count == 2)
        }
    }
}

extension Dictionary where Key == String, Value == Any {
    /// A max_tokens 0 echo choice in the shape of a max_tokens 1 one (one trailing entry the harness drops).
    func withExtraPosition() -> [String: Any] {
        var copy = self
        var logprobs = self["logprobs"] as! [String: Any]
        logprobs["token_logprobs"] = (logprobs["token_logprobs"] as! [Any]) + [0.0]
        logprobs["top_logprobs"] = (logprobs["top_logprobs"] as! [Any]) + [["x": 0.0]]
        copy["logprobs"] = logprobs
        return copy
    }
}

@Suite struct RefusalTests {
    func expectError(
        _ client: any TestClientProtocol, body: Data, status: HTTPResponse.Status, code: String? = nil,
        mentioning: String? = nil, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let answer = try await send(client, "/v1/completions", method: .post, body: body, expect: status, sourceLocation: sourceLocation)
        let error = try #require(answer["error"] as? [String: Any], sourceLocation: sourceLocation)
        #expect(Set(error.keys) == ["message", "type", "param", "code"], sourceLocation: sourceLocation)
        let message = error["message"] as? String ?? ""
        #expect(!message.isEmpty, sourceLocation: sourceLocation)
        if let code { #expect(error["code"] as? String == code, "\(message)", sourceLocation: sourceLocation) }
        if let mentioning { #expect(message.contains(mentioning), "\(message)", sourceLocation: sourceLocation) }
    }

    func json(_ object: Any) throws -> Data { try JSONSerialization.data(withJSONObject: object) }

    @Test func badRequestsGetOpenAIErrors() async throws {
        try await ServerFixture.withClient { client in
            try await expectError(client, body: Data("{\"prompt\": [1, 2".utf8), status: .badRequest, code: "invalid_json")
            try await expectError(client, body: Data(), status: .badRequest, code: "invalid_json")
            try await expectError(client, body: try json([1, 2]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["max_tokens": 1]), status: .badRequest, code: "missing_field")
            try await expectError(client, body: try json(["prompt": 5]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1, "a"]]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [[1], 2]]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1.5]]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [-1]]), status: .badRequest, code: "invalid_token")
            try await expectError(
                client, body: try json(["prompt": [1, 160]]), status: .badRequest, code: "invalid_token", mentioning: "0..<160")
            try await expectError(
                client, body: try json(["prompt": "<|end_of_text|>"]), status: .badRequest, code: "invalid_token", mentioning: "2003")
            try await expectError(
                client, body: try json(["prompt": [Int](repeating: 3, count: 65), "max_tokens": 0]),
                status: .badRequest, code: "context_length_exceeded", mentioning: "64")
            try await expectError(
                client, body: try json(["prompt": [1, 2], "temperature": 0.7]), status: .badRequest, code: "unsupported_value",
                mentioning: "greedy")
            try await expectError(client, body: try json(["prompt": [1, 2], "max_tokens": -1]), status: .badRequest)
            try await expectError(
                client, body: try json(["prompt": [1, 2], "max_tokens": "4"]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1, 2], "echo": "yes"]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1, 2], "logprobs": 1000]), status: .badRequest)
            try await expectError(client, body: try json(["prompt": [1, 2], "logprobs": true]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1, 2], "stop": [1]]), status: .badRequest, code: "invalid_type")
            try await expectError(client, body: try json(["prompt": [1, 2], "n": 2]), status: .badRequest, code: "unsupported_value")
            try await expectError(
                client, body: try json(["prompt": [1, 2], "stream": true]), status: .badRequest, code: "unsupported_value")
            try await expectError(
                client, body: try json(["prompt": [[1]] + [[Int]](repeating: [2], count: 8)]), status: .badRequest, code: "too_many_prompts"
            )
            try await expectError(client, body: try json(["prompt": [], "max_tokens": 1]), status: .badRequest)
            try await expectError(client, body: try json(["prompt": "", "max_tokens": 1]), status: .badRequest, mentioning: "empty")
            try await expectError(client, body: try json(["prompt": [1], "model": "other"]), status: .notFound, code: "model_not_found")
            let big = Data(("{\"prompt\": \"" + String(repeating: "a", count: 40_000) + "\"}").utf8)
            try await expectError(client, body: big, status: .contentTooLarge, code: "request_too_large")
            let deep = Data((String(repeating: "[", count: 5000) + String(repeating: "]", count: 5000)).utf8)
            try await expectError(client, body: deep, status: .badRequest, code: "invalid_json", mentioning: "nesting")

            // Fields that do not change greedy decoding, and unknown ones, are accepted.
            try await post(
                client, "/v1/completions",
                json: ["prompt": [1, 2], "max_tokens": 1, "top_p": 1, "top_k": 5, "user": "u", "until": ["x"]] as [String: Any])
        }
    }

    /// 500 malformed or oversized requests, in process (no sockets), then a good request still succeeds.
    @Test func survivesFiveHundredBadRequests() async throws {
        var generator = SplitMix64(seed: 20241127)
        let makers: [(inout SplitMix64) -> Data] = [
            { g in Data((0..<Int(g.next() % 300)).map { _ in UInt8(truncatingIfNeeded: g.next()) }) },
            { g in
                let s = "{\"prompt\": [1, 2, 3], \"max_tokens\": 1, \"echo\": true}";
                return Data(s.utf8.prefix(Int(g.next() % UInt64(s.utf8.count))))
            },
            { g in Data(("{\"prompt\": \"" + String(repeating: "z", count: 33_000 + Int(g.next() % 5000)) + "\"}").utf8) },
            { g in Data(((0..<Int(40 + g.next() % 2000)).map { _ in "{\"a\":" }.joined() + "1").utf8) },
            { g in Data("{\"prompt\": [\(g.next()), 1]}".utf8) },
            { _ in Data("{\"prompt\": [1e999]}".utf8) },
            { _ in Data([0x7B, 0x22, 0x70, 0x22, 0x3A, 0x22, 0xFF, 0xFE, 0x22, 0x7D]) },
            { _ in Data("{\"prompt\": \"\\ud800\"}".utf8) },
            { g in Data("{\"prompt\": [1, 2], \"max_tokens\": \(-1 - Int(g.next() % 1000))}".utf8) },
            { g in Data("{\"prompt\": [[1], [\(160 + g.next() % 1_000_000)]]}".utf8) },
            { _ in Data("{\"prompt\": {\"tokens\": [1]}}".utf8) },
            { _ in Data("{\"prompt\": [1], \"logprobs\": -3}".utf8) },
            { _ in Data("{\"prompt\": [1], \"stop\": {\"a\": 1}}".utf8) },
            { _ in Data("{\"prompt\": [1], \"temperature\": \"hot\"}".utf8) },
            { g in
                Data(
                    "{\"prompt\": [\(Array(repeating: "7", count: 65 + Int(g.next() % 100)).joined(separator: ","))], \"max_tokens\": 0}"
                        .utf8)
            },
            { _ in Data("[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[".utf8) },
            { _ in Data("null".utf8) },
            { _ in Data("\"prompt\"".utf8) },
        ]
        var made: [Data] = []
        for i in 0..<500 { made.append(makers[i % makers.count](&generator)) }
        let bodies = made
        try await ServerFixture.withClient { client in
            var statuses: [Int: Int] = [:]
            for (i, body) in bodies.enumerated() {
                let uri = ["/v1/completions", "/tokenize", "/detokenize"][i % 3 == 2 ? 1 + (i / 3) % 2 : 0]
                try await client.execute(uri: uri, method: .post, body: ByteBuffer(bytes: body)) { response in
                    statuses[Int(response.status.code), default: 0] += 1
                    #expect(
                        (400..<500).contains(response.status.code),
                        "request \(i) to \(uri) → \(response.status): \(String(buffer: response.body))")
                    let object = try? JSONSerialization.jsonObject(with: Data(String(buffer: response.body).utf8)) as? [String: Any]
                    #expect((object?["error"] as? [String: Any])?["message"] is String, "request \(i): no OpenAI error object")
                }
            }
            #expect(statuses.values.reduce(0, +) == 500)
            let good = try await post(
                client, "/v1/completions", json: ["prompt": [[1, 2, 3]], "max_tokens": 1, "logprobs": 1, "echo": true] as [String: Any])
            #expect(
                ((good["choices"] as? [[String: Any]])?.first?["logprobs"] as? [String: Any])?["token_logprobs"].map {
                    ($0 as! [Any]).count
                } == 4)
        }
    }

    @Test func admissionGateBoundsWaitingRequests() {
        let gate = AdmissionGate(limit: 2)
        #expect(gate.tryEnter() && gate.tryEnter())
        #expect(!gate.tryEnter())
        gate.leave()
        #expect(gate.tryEnter())
    }
}

/// A small deterministic generator, so the robustness test sends the same requests every run.
struct SplitMix64 {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
