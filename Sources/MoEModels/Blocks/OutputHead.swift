import MoETensor

/// The last step of every family's forward: final RMSNorm and output head, on only the hidden rows whose logits
/// a `LogitsSelection` asks for.
enum OutputHead {
    /// Logits `[rows.count, vocab]` of hidden rows `rows` (in that order) of `hidden` `[*, dim]`.
    static func logits(
        hidden: Tensor, rows: [Int], norm: [Float], eps: Float, head: Weight, backend: any TensorBackend
    ) -> Tensor {
        let d = hidden.lastDim
        let normed = Tensor(shape: [rows.count, d])
        if rows.count == hidden.rows, rows.elementsEqual(0..<hidden.rows) {
            backend.rmsNorm(hidden.data, rows: rows.count, dim: d, weight: norm, eps: eps, into: normed.data)
        } else {
            for (i, r) in rows.enumerated() {
                backend.rmsNorm(hidden.row(r), rows: 1, dim: d, weight: norm, eps: eps, into: normed.row(i))
            }
        }
        return backend.linear(normed, head)
    }
}
