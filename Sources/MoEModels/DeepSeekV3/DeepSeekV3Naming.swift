import Foundation
import MoECheckpoint

/// DeepSeek-V3's naming: HF DeepSeek-V3 keys in safetensors files whose keys carry HF's `model.` prefix,
/// TorchTitan keys (either era, or a mix) otherwise.
public struct DeepSeekV3Naming: TensorNaming {
    public init() {}

    public func nameMap(for store: any RawTensorStore) throws -> TensorNameMap {
        let keys = store.rawTensorInfos.keys
        if store is SafetensorsCheckpoint, keys.contains(where: { $0.hasPrefix("model.") }) {
            let naming = try HFNaming(keys: keys, source: store.description)
            return TensorNameMap(
                era: .huggingface, direct: naming.rawNames, stacked: naming.expertNames,
                ignoredKeys: naming.ignoredKeys)
        }
        let naming = try TorchTitanNaming(keys: keys, source: store.description)
        return TensorNameMap(era: naming.era, styles: naming.styles, direct: naming.rawNames, ignoredKeys: naming.ignoredKeys)
    }
}

/// Opens a DeepSeek-V3 checkpoint (TorchTitan keys of either era, or HF DeepSeek-V3 keys) under canonical
/// TorchTitan v0.2.x names; per-expert HF tensors are stacked. DeepSeek-V3 is the family of checkpoints that
/// name none; other families pass their own naming to `openWeightSource(at:naming:)`.
public func openWeightSource(at url: URL) throws -> WeightSource {
    try openWeightSource(at: url, naming: DeepSeekV3Naming())
}
