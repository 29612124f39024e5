import Foundation
import MoEJSON

/// A results file as written by `moe-eval run` or by the seed's `eval_moe_model.py`, read without a fixed
/// schema: seed files lack most of our keys, store counts as floats and may hold Python's `NaN`/`Infinity`,
/// so `compare` and `report` walk the JSON instead of decoding `EvalResults`.
public struct ResultsFile {
    /// The file as given on the command line (used in every message).
    public let path: String
    public let root: JSONObject

    /// The top-level sections that hold metrics; a file with none of them is not a results file.
    public static let metricSections = ["routing_stats", "inference_performance", "computational_cost", "lm_eval_results"]

    public struct LoadError: Error, CustomStringConvertible, LocalizedError {
        public let description: String
        public var errorDescription: String? { description }
    }

    public init(path: String, root: JSONObject) {
        self.path = path
        self.root = root
    }

    public static func load(_ url: URL) throws -> ResultsFile {
        let path = url.path
        let data: Data
        do {
            data = try Data(contentsOf: url)
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw LoadError(description: "\(path): \(reason)")
        }
        return try parse(data, path: path)
    }

    public static func parse(_ data: Data, path: String) throws -> ResultsFile {
        let value: JSONValue
        do {
            value = try JSONValue.parse(Array(data), allowNonFinite: true)
        } catch let error as JSONParseError {
            throw LoadError(description: "\(path) is not an eval results file: not valid JSON (\(error.description))")
        }
        guard case .object(let root) = value else {
            throw LoadError(description: "\(path) is not an eval results file: the JSON is \(value.typeName), not an object")
        }
        let present = metricSections.filter { root[$0] != nil } + (root["lm_eval_samples"] != nil ? ["lm_eval_samples"] : [])
        guard !present.isEmpty else {
            let keys = root.keys.prefix(6).joined(separator: ", ")
            throw LoadError(
                description:
                    "\(path) is not an eval results file: none of \(metricSections.joined(separator: ", ")) at the top level (it has \(keys.isEmpty ? "no keys" : keys + (root.count > 6 ? ", …" : "")))"
            )
        }
        for name in present where root[name]?.objectValue == nil && root[name]?.isNull == false {
            throw LoadError(description: "\(path) is not an eval results file: \(name) is \(root[name]!.typeName), not an object")
        }
        return ResultsFile(path: path, root: root)
    }

    /// Written by the seed's scripts (no `moe_eval` record): its `active_params_billions` is the total count.
    public var isSeedFormat: Bool { root["moe_eval"] == nil }

    /// A top-level section, nil when absent, null or empty (moe-eval writes `{}` for phases it did not run).
    public func section(_ name: String) -> JSONObject? {
        // All-null sections are how the seed writes a step that did not run (inference under the 30s preset).
        guard let object = root[name]?.objectValue, object.entries.contains(where: { $0.value != .null }) else { return nil }
        return object
    }

    public var runRecord: JSONObject? { section("moe_eval") }
    public var preset: String? { runRecord?["preset"]?.stringValue }
    public var checkpointDir: String? { root["checkpoint_dir"]?.stringValue }
    public var timestamp: String? { root["eval_timestamp"]?.stringValue }
    public var walltimeSeconds: Double? { root["walltime_seconds"]?.doubleValue }

    /// Per-layer routing entries (`layer_<i>`), ordered by layer index.
    public var routingLayers: [(name: String, index: Int, metrics: JSONObject)] {
        guard let stats = section("routing_stats") else { return [] }
        var layers: [(name: String, index: Int, metrics: JSONObject)] = []
        for (key, value) in stats.entries where key.hasPrefix("layer_") {
            guard let metrics = value.objectValue else { continue }
            layers.append((key, Int(key.dropFirst(6)) ?? Int.max, metrics))
        }
        return layers.sorted { $0.index != $1.index ? $0.index < $1.index : $0.name < $1.name }
    }

    public var routingAggregate: JSONObject? { section("routing_stats")?["aggregate"]?.objectValue }
}
