extension KVCache {
    /// A cache whose `rows` rows all start as copies of row `row` of `source`, filled to `source.length`
    /// positions: one prefill of a shared prefix (a question's context) continued by several different
    /// suffixes (its answer choices) in one batched forward.
    public convenience init(model: some CausalLanguageModel, repeating source: KVCache, row: Int, rows: Int, capacity: Int) throws {
        guard (0..<source.batch).contains(row), rows > 0, capacity >= source.length,
            source.layout == model.kvCacheLayout
        else {
            throw ModelLoadError(
                "KV cache: cannot repeat row \(row) of a \(source.batch)-row cache holding \(source.length) positions into \(rows) rows of capacity \(capacity)"
            )
        }
        self.init(model: model, batch: rows, capacity: capacity)
        let filled = source.length
        for (from, to) in zip(source.layers, layers) {
            for (stream, (fromValues, toValues)) in zip(from.streams, zip(from.values, to.values)) {
                let width = stream.width
                let copied = fromValues + from.row(batch: row, position: 0) * width
                for b in 0..<rows {
                    (toValues + to.row(batch: b, position: 0) * width).update(from: copied, count: filled * width)
                }
            }
        }
        length = filled
    }
}
