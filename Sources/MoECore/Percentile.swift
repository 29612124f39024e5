/// The q-quantile (0…1) of `values` with linear interpolation between closest ranks (numpy's default), 0 for no
/// values: the one percentile of routing summaries and benchmark latencies (docs/METRICS.md).
public func percentile(_ values: [Double], _ q: Double) -> Double {
    let sorted = values.sorted()
    guard let first = sorted.first else { return 0 }
    let position = (q >= 0 ? min(q, 1) : 0) * Double(sorted.count - 1)
    let lower = Int(position.rounded(.down)), upper = min(lower + 1, sorted.count - 1)
    guard lower >= 0 else { return first }
    return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
}
