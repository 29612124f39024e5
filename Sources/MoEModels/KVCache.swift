import MoETensor

/// Keys and values of the positions already processed, per layer and batch row, so that decoding a token
/// costs one position's work instead of a full forward. MLA's compressed form: per position the normalised
/// latent `c_kv` (`kv_lora_rank` values) and the shared RoPE'd key `k_pe` (`qk_rope_head_dim` values), about
/// 7× smaller than per-head keys and values for the TorchTitan flavors. Prefill expands the latent per head;
/// decode attends in the latent space (`DeepSeekV3.attention`).
public final class KVCache: @unchecked Sendable {
    public let batch: Int
    public let capacity: Int
    /// Positions filled so far (the same for every row).
    public internal(set) var length = 0
    let layers: [Layer]

    public init(model: DeepSeekV3, batch: Int, capacity: Int) {
        self.batch = batch
        self.capacity = capacity
        layers = (0..<model.args.nLayers).map { _ in Layer(batch: batch, capacity: capacity, args: model.args) }
    }

    /// Bytes held (what the cache adds to resident memory).
    public var byteCount: Int { layers.reduce(0) { $0 + $1.byteCount } }

    /// Values cached per position and layer: `kv_lora_rank + qk_rope_head_dim`.
    public static func valuesPerPosition(_ args: ModelArgs) -> Int { args.kvLoraRank + args.qkRopeHeadDim }

    public func reset() { length = 0 }

    final class Layer: @unchecked Sendable {
        let capacity: Int
        let latentWidth: Int, ropeWidth: Int
        let latent: UnsafeMutablePointer<Float>       // [batch, capacity, kv_lora_rank], after kv_norm
        let ropeKeys: UnsafeMutablePointer<Float>     // [batch, capacity, rope dims], after RoPE
        let byteCount: Int

        init(batch: Int, capacity: Int, args: ModelArgs) {
            self.capacity = capacity
            latentWidth = args.kvLoraRank
            ropeWidth = args.qkRopeHeadDim
            let latentCount = batch * capacity * latentWidth
            let peCount = batch * capacity * ropeWidth
            latent = .allocate(capacity: max(latentCount, 1))
            ropeKeys = .allocate(capacity: max(peCount, 1))
            byteCount = (latentCount + peCount) * 4
        }

        deinit { latent.deallocate(); ropeKeys.deallocate() }

        func row(batch b: Int, position: Int) -> Int { b * capacity + position }
    }
}
