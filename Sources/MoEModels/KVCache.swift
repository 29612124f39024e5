import MoETensor

/// One per-position quantity a layer's attention caches (MLA: the normalised latent and the RoPE'd shared
/// key; GQA: keys and values of every kv head), `width` floats per position and batch row.
public struct KVStream: Sendable, Equatable {
    public var name: String
    public var width: Int
    public init(name: String, width: Int) { self.name = name; self.width = width }
}

/// What a model caches: the streams of each layer, in layer order. The attention block that writes a layer's
/// streams defines them (e.g. `MultiHeadLatentAttention.cacheStreams`).
public struct KVCacheLayout: Sendable, Equatable {
    public var layers: [[KVStream]]
    public init(layers: [[KVStream]]) { self.layers = layers }
    /// The same streams in every one of `count` layers.
    public init(repeating streams: [KVStream], count: Int) { layers = Array(repeating: streams, count: count) }

    /// Floats cached per position over all layers.
    public var valuesPerPosition: Int { layers.reduce(0) { $0 + $1.reduce(0) { $0 + $1.width } } }
}

/// Keys and values of the positions already processed, per layer and batch row, so that decoding a token
/// costs one position's work instead of a full forward. Each layer holds the streams its attention block
/// declared, as `[batch, capacity, width]` fp32 arrays.
public final class KVCache: @unchecked Sendable {
    public let batch: Int
    public let capacity: Int
    public let layout: KVCacheLayout
    /// Positions filled so far (the same for every row).
    public internal(set) var length = 0
    let layers: [Layer]

    public init(layout: KVCacheLayout, batch: Int, capacity: Int) {
        self.batch = batch
        self.capacity = capacity
        self.layout = layout
        layers = layout.layers.map { Layer(batch: batch, capacity: capacity, streams: $0) }
    }

    public convenience init(model: some CausalLanguageModel, batch: Int, capacity: Int) {
        self.init(layout: model.kvCacheLayout, batch: batch, capacity: capacity)
    }

    /// Bytes held (what the cache adds to resident memory).
    public var byteCount: Int { layers.reduce(0) { $0 + $1.byteCount } }

    /// Values cached per position and layer for DeepSeek-V3 (MLA): `kv_lora_rank + qk_rope_head_dim`.
    public static func valuesPerPosition(_ args: ModelArgs) -> Int { args.kvLoraRank + args.qkRopeHeadDim }

    public func reset() { length = 0 }

    /// For a backend that keeps the cached values elsewhere (the GPU's own copy): records `positions` more.
    public func advance(by positions: Int) throws {
        guard positions >= 0, positions <= capacity - length else {
            throw ModelLoadError("KV cache of \(capacity) positions holds \(length); \(positions) more do not fit")
        }
        length += positions
    }

    final class Layer: @unchecked Sendable {
        let capacity: Int
        let streams: [KVStream]
        /// One `[batch, capacity, streams[i].width]` array per stream.
        let values: [UnsafeMutablePointer<Float>]
        let byteCount: Int

        init(batch: Int, capacity: Int, streams: [KVStream]) {
            self.capacity = capacity
            self.streams = streams
            let counts = streams.map { batch * capacity * $0.width }
            values = counts.map { .allocate(capacity: max($0, 1)) }
            byteCount = counts.reduce(0, +) * MemoryLayout<Float>.size
        }

        deinit { for pointer in values { pointer.deallocate() } }

        func row(batch b: Int, position: Int) -> Int { b * capacity + position }
    }
}
