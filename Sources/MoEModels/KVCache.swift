import MoETensor

/// Keys and values of the positions already processed, per layer and batch row, so that decoding a token
/// costs one position's work instead of a full forward. Holds per head `k_nope | v` and the shared RoPE key.
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

    public func reset() { length = 0 }

    final class Layer {
        let capacity: Int
        let keysValues: UnsafeMutablePointer<Float>   // [batch, capacity, heads·(nope + v)]
        let ropeKeys: UnsafeMutablePointer<Float>     // [batch, capacity, rope dims]
        let byteCount: Int

        init(batch: Int, capacity: Int, args: ModelArgs) {
            self.capacity = capacity
            let kvCount = batch * capacity * args.nHeads * (args.qkNopeHeadDim + args.vHeadDim)
            let peCount = batch * capacity * args.qkRopeHeadDim
            keysValues = .allocate(capacity: max(kvCount, 1))
            ropeKeys = .allocate(capacity: max(peCount, 1))
            byteCount = (kvCount + peCount) * 4
        }

        deinit { keysValues.deallocate(); ropeKeys.deallocate() }

        func row(batch b: Int, position: Int) -> Int { b * capacity + position }
    }
}
