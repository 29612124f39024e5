import ArgumentParser
import Foundation
import MoECheckpoint
import MoEJSON
import MoEModels
import MoETensor

struct InspectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "inspect",
        abstract: "List a checkpoint's tensors, parameter counts and implied architecture; check it against a config.",
        discussion: """
            Example:
              moe-eval inspect --checkpoint outputs/checkpoint/step-1000 --config train.toml
            Exits with status 2 when the checkpoint disagrees with the given config or model args.
            """)

    @OptionGroup var model: ModelOptions

    @Flag(help: "Print JSON instead of a table.")
    var json = false

    func run() throws {
        try reportingErrors {
            let spec = try model.spec()
            let selected = try ModelRegistry.family(for: spec)
            // Shape inference knows DeepSeek-V3's tensors only; another family's checkpoint is read with its own
            // key names and args by building the model, whose loader names any tensor that does not fit.
            if selected.family.name != ModelRegistry.defaultFamily.name {
                try inspectByLoading(spec, selectedBy: selected.reason)
                return
            }
            let source = try openWeightSource(at: spec.checkpoint)
            let shapes = source.tensorInfos.mapValues(\.shape)
            let (implied, guessed) = ModelArgs.inferred(from: shapes)
            let given: (args: ModelArgs, origin: String)?
            if spec.hasTrainConfig || spec.modelArgs != nil || spec.flavor != nil {
                let r = try ModelLoader.resolveArgs(spec, source: source)
                given = (r.args, r.origin)
            } else {
                given = nil
            }
            let args = given?.args ?? implied
            let mismatches = given.map { $0.args.shapeMismatches(actual: shapes) } ?? []
            // Given args were validated when resolved; shapes can imply args that are not a model at all.
            let counts: ModelArgs.ParameterCounts?
            let countsProblem: String?
            do {
                try args.validate()
                counts = args.parameterCounts()
                countsProblem = nil
            } catch let error as ModelArgsError {
                counts = nil
                countsProblem = "the args implied by the shapes are not a model (\(error.message))"
            }
            let bytes = try Checked.sum(
                source.tensorInfos.values.map(\.byteCount),
                what: "\(source.description): the total size of the tensors")
            var roles: [String: Int] = [:]
            for entry in source.entries { roles[entry.role.rawValue, default: 0] += 1 }

            if json {
                let tensors: [JSONValue] = source.tensorInfos.keys.sorted().map { name in
                    let info = source.tensorInfos[name]!
                    return .object([
                        "name": .string(name), "dtype": .string(info.dtype.torchName),
                        "shape": .array(info.shape.map { .int($0) }), "bytes": .int(info.byteCount),
                    ])
                }
                var out: JSONObject = [
                    "checkpoint": .string(source.description),
                    "naming_era": .string(source.namingEra.rawValue),
                    "entries_by_role": .object(JSONObject(roles.sorted { $0.key < $1.key }.map { (key: $0.key, value: .int($0.value)) })),
                    "tensors": .array(tensors),
                    "tensor_bytes": .int(bytes),
                    "total_params": counts.map { .int($0.total) } ?? .null,
                    "active_params": counts.map { .int($0.active(topK: args.moeArgs.topK, numExperts: args.moeArgs.numExperts)) } ?? .null,
                    "implied_model_args": (try? JSONValueEncoder().encode(implied)) ?? .object([]),
                    "implied_guessed_fields": .array(guessed.map { .string($0) }),
                    "mismatches": .array(mismatches.map { .string($0) }),
                ]
                if let given { out.append("model_args_origin", .string(given.origin)) }
                if let countsProblem { out.append("params_not_computed", .string(countsProblem)) }
                print(JSONValue.object(out).prettyPrinted, terminator: "")
            } else {
                print("checkpoint: \(source.description)")
                print("key names: \(source.namingEra.rawValue)")
                print("entries: " + roles.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
                print("")
                let width = source.tensorInfos.keys.map(\.count).max() ?? 10
                for name in source.tensorInfos.keys.sorted(by: Self.naturalOrder) {
                    let info = source.tensorInfos[name]!
                    let shape = "[" + info.shape.map(String.init).joined(separator: ", ") + "]"
                    print(
                        name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                            + info.dtype.torchName.padding(toLength: 10, withPad: " ", startingAt: 0)
                            + shape.padding(toLength: 20, withPad: " ", startingAt: 0) + Self.formatBytes(info.byteCount))
                }
                print("")
                print("tensors: \(source.tensorInfos.count), \(Self.formatBytes(bytes))")
                if let counts {
                    print(
                        "parameters (\(given?.origin ?? "args implied by shapes")): total \(Self.formatCount(counts.total)), active per token \(Self.formatCount(counts.active(topK: args.moeArgs.topK, numExperts: args.moeArgs.numExperts)))"
                    )
                } else {
                    print("parameters: not computed: \(countsProblem ?? "")")
                }
                print("")
                print("architecture implied by the shapes (guessed: \(guessed.joined(separator: ", "))):")
                print(implied.jsonString())
                if given != nil {
                    print("")
                    print(
                        mismatches.isEmpty
                            ? "matches the given model args: every tensor present with the expected shape"
                            : "mismatches with the given model args:\n" + mismatches.map { "  - " + $0 }.joined(separator: "\n"))
                }
            }
            if !mismatches.isEmpty { throw ExitCode(2) }
        }
    }

    /// A family other than DeepSeek-V3: its tensors, its own parameter accounting and its args as resolved.
    func inspectByLoading(_ spec: ModelSpec, selectedBy reason: String) throws {
        let loaded = try ModelLoader.load(spec)
        let source = loaded.source
        let counts = loaded.model.parameterCounts()
        let shape = loaded.model.shape
        let active = counts.active(topK: shape.topK, numExperts: shape.numExperts)
        let bytes = try Checked.sum(
            source.tensorInfos.values.map(\.byteCount), what: "\(source.description): the total size of the tensors")
        let args = try JSONValueEncoder().encode(loaded.modelArgs)
        if json {
            let tensors: [JSONValue] = source.tensorInfos.keys.sorted(by: Self.naturalOrder).map { name in
                let info = source.tensorInfos[name]!
                return .object([
                    "name": .string(name), "dtype": .string(info.dtype.torchName),
                    "shape": .array(info.shape.map { .int($0) }), "bytes": .int(info.byteCount),
                ])
            }
            let out: JSONObject = [
                "checkpoint": .string(source.description),
                "family": .string(loaded.family.name),
                "family_selected_by": .string(reason),
                "naming_era": .string(source.namingEra.rawValue),
                "tensors": .array(tensors),
                "tensor_bytes": .int(bytes),
                "total_params": .int(counts.total),
                "active_params": .int(active),
                "model_args": args,
                "model_args_origin": .string(loaded.argsOrigin),
                "mismatches": .array([]),
            ]
            print(JSONValue.object(out).prettyPrinted, terminator: "")
            return
        }
        print("checkpoint: \(source.description)")
        print("family: \(loaded.family.name) (\(reason))")
        print("key names: \(source.namingEra.rawValue)")
        print("")
        let width = source.tensorInfos.keys.map(\.count).max() ?? 10
        for name in source.tensorInfos.keys.sorted(by: Self.naturalOrder) {
            let info = source.tensorInfos[name]!
            let shapeText = "[" + info.shape.map(String.init).joined(separator: ", ") + "]"
            print(
                name.padding(toLength: width + 2, withPad: " ", startingAt: 0)
                    + info.dtype.torchName.padding(toLength: 10, withPad: " ", startingAt: 0)
                    + shapeText.padding(toLength: 20, withPad: " ", startingAt: 0) + Self.formatBytes(info.byteCount))
        }
        print("")
        print("tensors: \(source.tensorInfos.count), \(Self.formatBytes(bytes))")
        print("parameters (\(loaded.argsOrigin)): total \(Self.formatCount(counts.total)), active per token \(Self.formatCount(active))")
        print("")
        print("\(loaded.family.name) architecture (every tensor loaded with the expected shape):")
        print(args.prettyPrinted)
    }

    /// "layers.2" before "layers.10".
    static func naturalOrder(_ a: String, _ b: String) -> Bool {
        a.compare(b, options: .numeric) == .orderedAscending
    }

    static func formatBytes(_ n: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(n), unit = 0
        while value >= 1024 && unit < units.count - 1 { value /= 1024; unit += 1 }
        return unit == 0 ? "\(n) B" : String(format: "%.2f %@", value, units[unit])
    }

    static func formatCount(_ n: Int) -> String {
        // The exact count is interpolated, not formatted: `%d` takes a 32-bit value and wrapped counts above 2³¹.
        n >= 1_000_000_000
            ? String(format: "%.3fB", Double(n) / 1e9) + " (\(n))"
            : n >= 1_000_000 ? String(format: "%.3fM", Double(n) / 1e6) + " (\(n))" : String(n)
    }
}
