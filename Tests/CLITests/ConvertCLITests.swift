import Foundation
import Testing

/// `moe-eval convert` against what transformers made of its output (goldens written by
/// tools/reference/transformers_agreement.py with transformers and TorchTitan's own to_hf), and its refusals.
@Suite struct ConvertCLITests {
    static let goldens = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures/transformers")

    static func golden(_ variant: String) throws -> [String: Any] {
        let url = goldens.appendingPathComponent("\(variant).json")
        return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], "\(url.path)")
    }

    static func fixture(_ variant: String) -> URL { CLI.dsv3Fixtures.appendingPathComponent(variant) }

    static func convert(_ variant: String, to output: URL, _ extra: [String] = []) throws -> CLI.Result {
        let f = fixture(variant)
        return try CLI.run(
            [
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
                "--model-args", f.appendingPathComponent("model_args.json").path,
                "--output", output.path, "--quiet",
            ] + extra)
    }

    static func json(_ url: URL) throws -> [String: Any] {
        try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any], "\(url.path)")
    }

    /// Tensor name → (dtype, shape) from a safetensors header, read without the library under test.
    static func header(_ url: URL) throws -> [String: (String, [Int])] {
        let data = try Data(contentsOf: url)
        let length = data.prefix(8).enumerated().reduce(0) { $0 | Int($1.element) << (8 * $1.offset) }
        let object = try #require(try JSONSerialization.jsonObject(with: data.subdata(in: 8..<(8 + length))) as? [String: Any])
        var out: [String: (String, [Int])] = [:]
        for (name, value) in object where name != "__metadata__" {
            let entry = try #require(value as? [String: Any])
            out[name] = (try #require(entry["dtype"] as? String), try #require(entry["shape"] as? [Int]))
        }
        return out
    }

    static func logits(_ value: Any?) throws -> [Double] {
        try #require(value as? [[[Double]]]).flatMap { $0.flatMap { $0 } }
    }

    /// max |a − b| and the tolerance 1e-4 · max(1, max |b|).
    static func compare(_ a: [Double], _ b: [Double]) -> (diff: Double, tolerance: Double) {
        #expect(a.count == b.count)
        let diff = zip(a, b).map { abs($0 - $1) }.max() ?? .infinity
        return (diff, 1e-4 * max(1, b.map(abs).max() ?? 0))
    }

    /// Sigmoid-routed (DeepseekV3ForCausalLM) and softmax-routed without a selection bias (DeepseekV2ForCausalLM).
    static let variants = ["v030_sigmoid_groups_qlora", "v022_sigmoid_groups_yarn", "v022_softmax_basic"]

    /// The files, tensor names/shapes/dtypes (TorchTitan's to_hf) and config fields (as transformers loaded them)
    /// of the conversion transformers was checked on; a 2-shard split with a consistent index.
    @Test(arguments: variants)
    func matchesWhatTransformersLoaded(variant: String) throws {
        let golden = try Self.golden(variant)
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf")
        let r = try Self.convert(variant, to: out, try #require(golden["convert_arguments"] as? [String]))
        #expect(r.status == 0, "\(r.stderr)")

        let shards = try #require(golden["shards"] as? [String])
        #expect(shards.count == 2)
        let files = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".safetensors") }.sorted()
        #expect(files == shards)
        let index = try Self.json(out.appendingPathComponent("model.safetensors.index.json"))
        let weightMap = try #require(index["weight_map"] as? [String: String])
        var seen: [String: (String, [Int])] = [:]
        var total = 0
        for file in files {
            let tensors = try Self.header(out.appendingPathComponent(file))
            for (name, info) in tensors {
                #expect(weightMap[name] == file, "\(name) is in \(file), the index says \(weightMap[name] ?? "nothing")")
                seen[name] = info
                total += info.1.reduce(1, *) * (info.0 == "F32" ? 4 : 2)
            }
        }
        #expect(Set(weightMap.keys) == Set(seen.keys))
        #expect((index["metadata"] as? [String: Any])?["total_size"] as? Int == total)
        let expectedTensors = try #require(golden["tensors"] as? [String: [String: Any]])
        #expect(Set(seen.keys) == Set(expectedTensors.keys))
        for (name, info) in expectedTensors {
            let dtype = try #require(info["dtype"] as? String) == "float32" ? "F32" : "BF16"
            #expect(seen[name]?.0 == dtype && seen[name]?.1 == info["shape"] as? [Int], "\(name)")
        }

        let config = try Self.json(out.appendingPathComponent("config.json"))
        #expect(config["architectures"] as? [String] == [try #require(golden["architecture"] as? String)])
        let loaded = try #require(golden["config"] as? [String: Any])
        for (key, value) in loaded {
            switch key {
            case "rope_parameters":
                let expected = try #require(value as? [String: Any])
                // Without rope_scaling transformers holds the default rope.
                let scaling = config["rope_scaling"] as? [String: Any] ?? ["rope_type": "default"]
                for (field, v) in expected {
                    let ours = field == "rope_theta" ? config["rope_theta"] : scaling[field]
                    #expect(Self.same(ours, v), "rope \(field): ours \(String(describing: ours)), transformers \(v)")
                }
                #expect(Set(scaling.keys).union(["rope_theta"]) == Set(expected.keys), "rope_scaling fields")
            case "num_mtp_layers":
                #expect(Self.same(config["num_nextn_predict_layers"], value))
            default:
                #expect(Self.same(config[key], value), "\(key): ours \(String(describing: config[key])), transformers \(value)")
            }
        }
    }

    static func same(_ a: Any?, _ b: Any?) -> Bool {
        switch (a, b) {
        case (nil, nil), (nil, is NSNull), (is NSNull, nil), (is NSNull, is NSNull): return true
        case (let x as String, let y as String): return x == y
        case (let x as [Any], let y as [Any]): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case (let x as NSNumber, let y as NSNumber): return x.doubleValue == y.doubleValue
        default: return false
        }
    }

    /// Our forward on the converted folder (model args from its config.json) gives transformers' logits:
    /// with the final norm eps TorchTitan used (recorded in config.json), and, with `--final-norm-eps`
    /// set to rms_norm_eps, the logits of transformers as it loads the folder.
    @Test(arguments: variants)
    func forwardOnConvertedFolderGivesTransformersLogits(variant: String) throws {
        let golden = try Self.golden(variant)
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf")
        #expect(try Self.convert(variant, to: out).status == 0)
        let tokens = Self.fixture(variant).appendingPathComponent("tokens.json")
        let asTorchTitan = golden["logits_torchtitan_final_norm_eps"] ?? golden["logits"]
        let runs: [([String], Any?)] = [([], asTorchTitan), (["--final-norm-eps", "1e-5"], golden["logits"])]
        for (extra, expected) in runs {
            let result = dir.appendingPathComponent("forward.json")
            let r = try CLI.run(
                [
                    "forward", "--checkpoint", out.path, "--tokens-file", tokens.path,
                    "--output", result.path, "--overwrite",
                ] + extra)
            #expect(r.status == 0, "\(r.stderr)")
            let (diff, tolerance) = Self.compare(try Self.logits(try Self.json(result)["logits"]), try Self.logits(expected))
            #expect(diff <= tolerance, "\(variant) \(extra): max |Δ| \(diff) > \(tolerance)")
        }
    }

    @Test func refusesNonEmptyOutputUnlessOverwrite() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf")
        try FileManager.default.createDirectory(at: out, withIntermediateDirectories: true)
        #expect(try Self.convert("v030_sigmoid_groups_qlora", to: out).status == 0, "an empty folder is used")
        let before = try FileManager.default.contentsOfDirectory(atPath: out.path).sorted()
        try Data("x".utf8).write(to: out.appendingPathComponent("model-00001-of-00001.safetensors"))

        let refused = try Self.convert("v022_sigmoid_groups_yarn", to: out)
        Self.expectCleanFailure(refused, [out.path, "--overwrite"])
        #expect(try Data(contentsOf: out.appendingPathComponent("model-00001-of-00001.safetensors")) == Data("x".utf8))

        let replaced = try Self.convert("v022_sigmoid_groups_yarn", to: out, ["--overwrite"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: out.path).sorted() == before)
        #expect(try Self.json(out.appendingPathComponent("config.json"))["num_hidden_layers"] as? Int == 4)
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["hf"], "no staging folder left")
    }

    @Test func refusesUnsupportedModels() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("hf")

        let toml = dir.appendingPathComponent("llama.toml")
        try Data("[model]\nname = \"llama3\"\nflavor = \"debugmodel\"\n".utf8).write(to: toml)
        let f = Self.fixture("v022_sigmoid_groups_yarn")
        Self.expectCleanFailure(
            try CLI.run([
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
                "--config", toml.path, "--output", out.path,
            ]), [toml.path, "llama3"])
        Self.expectCleanFailure(
            try CLI.run([
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
                "--model-args", f.appendingPathComponent("model_args.json").path,
                "--config", toml.path, "--output", out.path,
            ]), [toml.path, "llama3"])
        Self.expectCleanFailure(try Self.convert("v022_no_shared_score_before", to: out), ["score_before_experts"])
        let other = CLI.checkpointFixtures.appendingPathComponent("dcp_dtypes")
        Self.expectCleanFailure(
            try CLI.run([
                "convert", "--checkpoint", other.path, "--model-args",
                f.appendingPathComponent("model_args.json").path, "--output", out.path,
            ]),
            [other.path])
        Self.expectCleanFailure(
            try CLI.run([
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
                "--model-args", Self.fixture("v030_sigmoid_groups_qlora").appendingPathComponent("model_args.json").path,
                "--output", out.path,
            ]), ["does not match the model args"])
        #expect(!FileManager.default.fileExists(atPath: out.path))
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted() == ["llama.toml"])
    }

    /// A write that fails (a parent that is a file; a file-size limit as a full disk would) leaves no output
    /// folder and no index, complete-looking or not.
    @Test func writeErrorsLeaveNothingBehind() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let blocker = dir.appendingPathComponent("file")
        try Data("x".utf8).write(to: blocker)
        Self.expectCleanFailure(try Self.convert("v030_sigmoid_groups_qlora", to: blocker.appendingPathComponent("hf")), [blocker.path])
        Self.expectCleanFailure(try Self.convert("v030_sigmoid_groups_qlora", to: blocker), [blocker.path])

        let out = dir.appendingPathComponent("hf")
        let f = Self.fixture("v022_sigmoid_groups_yarn")
        // 64 KiB (ulimit counts 512- or 1024-byte blocks; either is below the ~230 KB shard).
        let script = "ulimit -f 64 && exec \"$0\" \"$@\""
        let r = try Self.shell([
            "-c", script, CLI.binary.path, "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
            "--model-args", f.appendingPathComponent("model_args.json").path, "--output", out.path, "--quiet",
        ])
        Self.expectCleanFailure(r, ["write failed"])
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir.path) == ["file"], "no output or staging folder left")
    }

    /// The train config's hf_assets_path is copied, and config.json names its BOS/EOS ids.
    @Test func copiesTheConfigsTokenizer() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let out = dir.appendingPathComponent("demo-hf")
        let demo = CLI.repoRoot.appendingPathComponent("assets/demo")
        let r = try CLI.run(
            [
                "convert", "--checkpoint", demo.appendingPathComponent("checkpoint/step-800").path,
                "--config", demo.appendingPathComponent("train.toml").path,
                "--model-args", demo.appendingPathComponent("model_args.json").path,
                "--output", out.path, "--dtype", "fp32", "--max-shard-size", "2MB", "--quiet",
            ], in: CLI.repoRoot)
        #expect(r.status == 0, "\(r.stderr)")
        #expect(r.stderr.contains("sigmoid"), "the softmax router is flagged: \(r.stderr)")
        let tokenizer = CLI.repoRoot.appendingPathComponent("assets/tokenizers/demo-dsv3")
        for name in ["tokenizer.json", "tokenizer_config.json"] {
            #expect(try Data(contentsOf: out.appendingPathComponent(name)) == Data(contentsOf: tokenizer.appendingPathComponent(name)))
        }
        let added = try #require(try Self.json(tokenizer.appendingPathComponent("tokenizer.json"))["added_tokens"] as? [[String: Any]])
        func id(_ content: String) -> Int? { added.first { $0["content"] as? String == content }?["id"] as? Int }
        let config = try Self.json(out.appendingPathComponent("config.json"))
        #expect(config["bos_token_id"] as? Int == id("<｜begin▁of▁sentence｜>"))
        #expect(config["eos_token_id"] as? Int == id("<｜end▁of▁sentence｜>"))
        #expect(config["torch_dtype"] as? String == "float32" && config["scoring_func"] as? String == "softmax")
        let shards = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".safetensors") }
        #expect(shards.count >= 2)
        for shard in shards {
            #expect(try Self.header(out.appendingPathComponent(shard)).values.allSatisfy { $0.0 == "F32" })
        }
    }

    /// The same command converts every registered family (chosen by its model-args file); DeepSeek-V3's numerics
    /// options are refused for the others in one line, with nothing written.
    @Test func everyFamilyConvertsAndRefusesDeepSeekOnlyOptions() throws {
        let models = CLI.repoRoot.appendingPathComponent("Tests/MoEModelsTests/Fixtures")
        let fixtures = [
            ("qwen3", models.appendingPathComponent("qwen3/v030_qwen3_fp32"), "Qwen3MoeForCausalLM"),
            ("gpt_oss", models.appendingPathComponent("gpt_oss/v030_gptoss_fp32"), "GptOssForCausalLM"),
            ("deepseek_v3", Self.fixture("v022_softmax_basic"), "DeepseekV2ForCausalLM"),
        ]
        for (family, f, architecture) in fixtures {
            let dir = try CLI.scratch()
            defer { CLI.cleanUp(dir) }
            let out = dir.appendingPathComponent("hf")
            let arguments = [
                "convert", "--checkpoint", f.appendingPathComponent("checkpoint").path,
                "--model-args", f.appendingPathComponent("model_args.json").path, "--output", out.path, "--no-tokenizer",
                "--dtype", "bf16", "--max-shard-size", "30KB", "--quiet",
            ]
            let r = try CLI.run(arguments)
            #expect(r.status == 0, "\(family): \(r.stderr)")
            #expect(r.stdout.contains(architecture) && r.stdout.contains("(bfloat16)") && r.stdout.contains("(max 30KB)"), "\(r.stdout)")
            let shards = try FileManager.default.contentsOfDirectory(atPath: out.path).filter { $0.hasSuffix(".safetensors") }
            #expect(shards.count > 1, "\(family): 30KB shards")
            guard family != "deepseek_v3" else { continue }
            let refusedOut = dir.appendingPathComponent("refused")
            let refused = try CLI.run(
                arguments.map { $0 == out.path ? refusedOut.path : $0 } + ["--yarn", "on"])
            Self.expectCleanFailure(refused, ["--yarn", family])
            #expect(!FileManager.default.fileExists(atPath: refusedOut.path))
        }
    }

    /// `/bin/sh` with `arguments` (CLI.run runs the binary itself).
    static func shell(_ arguments: [String]) throws -> CLI.Result {
        try CLI.execute(URL(fileURLWithPath: "/bin/sh"), arguments)
    }

    static func expectCleanFailure(_ r: CLI.Result, _ fragments: [String], sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(r.status != 0 && r.status < 128, "status \(r.status): \(r.stderr)", sourceLocation: sourceLocation)
        #expect(r.stderrLines.count == 1, "expected one line, got: \(r.stderr)", sourceLocation: sourceLocation)
        for fragment in fragments {
            #expect(r.stderr.contains(fragment), "missing \"\(fragment)\" in: \(r.stderr)", sourceLocation: sourceLocation)
        }
    }
}
