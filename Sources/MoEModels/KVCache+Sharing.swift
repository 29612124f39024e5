extension KVCache {
    /// A cache whose `rows` rows all start as copies of row `row` of `source`, filled to `source.length`
    /// positions: one prefill of a shared prefix (a question's context) continued by several different
    /// suffixes (its answer choices) in one batched forward.
    public convenience init(model: DeepSeekV3, repeating source: KVCache, row: Int, rows: Int, capacity: Int) throws {
        guard (0..<source.batch).contains(row), rows > 0, capacity >= source.length,
              source.layers.count == model.args.nLayers else {
            throw ModelLoadError("KV cache: cannot repeat row \(row) of a \(source.batch)-row cache holding \(source.length) positions into \(rows) rows of capacity \(capacity)")
        }
        self.init(model: model, batch: rows, capacity: capacity)
        let filled = source.length
        for (from, to) in zip(source.layers, layers) {
            let latent = from.latent + from.row(batch: row, position: 0) * from.latentWidth
            let ropeKeys = from.ropeKeys + from.row(batch: row, position: 0) * from.ropeWidth
            for b in 0..<rows {
                (to.latent + to.row(batch: b, position: 0) * to.latentWidth).update(from: latent, count: filled * from.latentWidth)
                (to.ropeKeys + to.row(batch: b, position: 0) * to.ropeWidth).update(from: ropeKeys, count: filled * from.ropeWidth)
            }
        }
        length = filled
    }
}
