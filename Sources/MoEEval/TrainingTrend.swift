import Foundation
import MoEJSON

/// Headline metrics of several checkpoints against training step (docs/METRICS.md, "Trends"): what `report`
/// draws and `compare` tabulates when given a training run's results files.
public struct TrainingTrend: Sendable {
    /// Agreement of two checkpoints' routing on the same tokens (top-k overlap, 1 = identical) and its chance
    /// level under uniform random routing; nil when the two files carry no routed expert ids for a common token set.
    public typealias AgreementMeasure = @Sendable (ResultsFile, ResultsFile) -> (value: Double, chance: Double)?

    public struct Series: Sendable {
        public var id: String
        public var title: String
        public var values: [Double?]
        /// One standard error per point (accuracy), drawn as a band.
        public var errors: [Double?]?
        /// A reference line per point (the MaxVio noise floor, an agreement's chance level).
        public var reference: [Double?]?
        public var referenceName: String?
        /// The seed's band thresholds drawn as background zones, low to high: (upper bound, band).
        public var bands: [(upper: Double, band: SeedBand)]?
        /// Where the metric can live (accuracy: 0…1): the error band is cut there.
        public var range: ClosedRange<Double>?
    }

    public var labels: [String]
    public var steps: [Int?]
    public var series: [Series]

    /// The x position of each file: its step, or its index where any step is missing.
    public var positions: [Double] {
        steps.allSatisfy { $0 != nil } ? steps.map { Double($0!) } : steps.indices.map(Double.init)
    }

    public init(_ files: [ResultsFile], steps: [Int?], agreement: AgreementMeasure? = nil) {
        self.steps = steps
        labels = files.indices.map { index in steps[index].map { "step \($0)" } ?? Comparison.label(index) }
        var series: [Series] = []
        func layerMean(_ file: ResultsFile, _ key: String) -> Double? {
            let values = file.routingLayers.compactMap { $0.metrics[key]?.doubleValue }.filter(\.isFinite)
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
        func routing(_ aggregateKey: String, mean: String) -> [Double?] {
            files.map { file in
                file.routingAggregate?[aggregateKey]?.doubleValue ?? file.routingAggregate?[mean]?.objectValue?["mean"]?.doubleValue
                    ?? layerMean(file, mean)
            }
        }
        series.append(
            Series(
                id: "gini", title: "Gini (mean over layers)", values: routing("avg_gini_coefficient", mean: "gini_coefficient"),
                bands: [(0.1, .excellent), (0.2, .good), (0.3, .fair), (.infinity, .poor)]))
        series.append(
            Series(
                id: "cv", title: "CV (mean over layers)", values: routing("avg_coefficient_of_variation", mean: "coefficient_of_variation"),
                bands: [(0.2, .excellent), (0.4, .good), (0.5, .fair), (.infinity, .poor)]))
        series.append(
            Series(
                id: "maxvio", title: "MaxVio (mean over layers)",
                values: files.map {
                    $0.routingAggregate?["max_violation"]?.objectValue?["mean"]?.doubleValue ?? layerMean($0, "max_violation")
                },
                reference: files.map { layerMean($0, "max_violation_noise_floor") }, referenceName: "noise floor"))
        series.append(
            Series(
                id: "dead", title: "Dead experts (sum over layers)",
                values: files.map { file in
                    let counts = file.routingLayers.compactMap { $0.metrics["dead_experts"]?.doubleValue }
                    return counts.isEmpty ? nil : counts.reduce(0, +)
                }))
        if let agreement, files.count >= 2, let final = files.last {
            var previous: [Double?] = [nil], previousChance: [Double?] = [nil]
            for index in 1..<files.count {
                let measured = agreement(files[index - 1], files[index])
                previous.append(measured?.value)
                previousChance.append(measured?.chance)
            }
            let toFinal = files.map { agreement($0, final) }
            if previous.contains(where: { $0 != nil }) {
                series.append(
                    Series(
                        id: "agreement-previous", title: "Routing agreement with the previous checkpoint (top-k overlap)",
                        values: previous, reference: previousChance, referenceName: "chance"))
            }
            if toFinal.contains(where: { $0 != nil }) {
                series.append(
                    Series(
                        id: "agreement-final", title: "Routing agreement with the final checkpoint (top-k overlap)",
                        values: toFinal.map { $0?.value }, reference: toFinal.map { $0?.chance }, referenceName: "chance"))
            }
        }
        for row in Comparison.accuracyRows(files) where row.direction != .neutral {
            let key = row.metric.split(separator: ",").first.map(String.init) ?? row.metric
            let bounded = row.values.allSatisfy { ($0 ?? 0) >= 0 && ($0 ?? 0) <= 1 }
            series.append(
                Series(
                    id: "acc-\(row.task)-\(key)", title: "\(row.task) \(key) ± SE", values: row.values, errors: row.standardErrors,
                    range: bounded ? 0...1 : nil))
        }
        self.series = series.filter { $0.values.contains { $0?.isFinite == true } }
    }

    // MARK: - Text (compare)

    /// One row per series: the value at each step.
    public func text() -> String {
        var table = [["metric"] + labels]
        for item in series {
            table.append(
                [item.title]
                    + item.values.indices.map { index in
                        guard let value = item.values[index] else { return "—" }
                        var cell = Comparison.formatNumber(value)
                        if let error = item.errors?[index] { cell += " ± " + Comparison.formatNumber(error) }
                        return cell
                    })
        }
        return "\nTrend over training steps\n" + Comparison.layout(table)
    }

    // MARK: - SVG (report)

    /// A small line plot per series: points at their step, the SE band, the reference line, the seed's bands.
    public func svg(_ item: Series) -> String {
        let width = 380.0, height = 170.0, left = 48.0, right = 10.0, top = 24.0, bottom = 28.0
        let x = positions
        let plotWidth = width - left - right, plotHeight = height - top - bottom
        func clamped(_ value: Double) -> Double { item.range.map { min(max(value, $0.lowerBound), $0.upperBound) } ?? value }
        var low = Double.infinity, high = -Double.infinity
        for index in item.values.indices {
            guard let value = item.values[index], value.isFinite else { continue }
            let error = item.errors?[index].flatMap { $0.isFinite ? $0 : nil } ?? 0
            low = min(low, clamped(value - error))
            high = max(high, clamped(value + error))
            if let reference = item.reference?[index] ?? nil, reference.isFinite {
                low = min(low, reference)
                high = max(high, reference)
            }
        }
        if !low.isFinite { low = 0; high = 1 }
        low = min(low, 0)
        if high - low < 1e-12 { high = low + 1 }
        high += (high - low) * 0.08
        let xLow = x.min() ?? 0, xHigh = x.max() ?? 1
        let xSpan = xHigh - xLow
        func px(_ value: Double) -> Double { xSpan > 0 ? left + (value - xLow) / xSpan * plotWidth : left + plotWidth / 2 }
        func py(_ value: Double) -> Double { top + (1 - (value - low) / (high - low)) * plotHeight }
        let f = HTMLReport.fmt
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"trend-\(HTMLReport.escape(item.id))\" class=\"trend\" data-points=\"\(item.values.count)\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\">\n"
        svg += "<title>\(HTMLReport.escape(item.title)) against training step</title>\n"
        svg += "<text class=\"plot-title\" x=\"\(f(left))\" y=\"14\">\(HTMLReport.escape(item.title))</text>\n"
        if let bands = item.bands {
            var lower = low
            for (upper, band) in bands {
                let top = min(upper, high), bottom = max(lower, low)
                if top > bottom {
                    svg +=
                        "<rect class=\"zone \(band.rawValue)\" x=\"\(f(left))\" y=\"\(f(py(top)))\" width=\"\(f(plotWidth))\" height=\"\(f(py(bottom) - py(top)))\"><title>seed band \(band.rawValue)</title></rect>\n"
                }
                lower = upper
            }
        }
        svg += "<path class=\"frame\" d=\"M\(f(left)) \(f(top))V\(f(top + plotHeight))H\(f(left + plotWidth))\"/>\n"
        for tick in [low, (low + high) / 2, high] {
            let shown = abs(tick) < 1e-9 * (high - low) ? 0 : tick
            svg +=
                "<text class=\"axis\" x=\"\(f(left - 4))\" y=\"\(f(py(tick) + 3))\" text-anchor=\"end\">\(HTMLReport.escape(String(format: "%.3g", shown)))</text>\n"
        }
        for index in x.indices {
            let anchor = x.count == 1 ? "middle" : index == 0 ? "start" : index == x.count - 1 ? "end" : "middle"
            let label = steps[index].map(String.init) ?? labels[index]
            svg +=
                "<text class=\"axis\" x=\"\(f(px(x[index])))\" y=\"\(f(height - 10))\" text-anchor=\"\(anchor)\">\(HTMLReport.escape(label))</text>\n"
        }
        if let errors = item.errors {
            var upper: [(Double, Double)] = [], lower: [(Double, Double)] = []
            for index in item.values.indices {
                guard let value = item.values[index], let error = errors[index], value.isFinite, error.isFinite else { continue }
                upper.append((px(x[index]), py(clamped(value + error))))
                lower.append((px(x[index]), py(clamped(value - error))))
            }
            if !upper.isEmpty {
                let points = (upper + lower.reversed()).map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " ")
                svg += "<polygon class=\"se-band\" points=\"\(points)\"><title>± one standard error</title></polygon>\n"
            }
        }
        if let reference = item.reference {
            let points = reference.indices.compactMap { index -> String? in
                guard let value = reference[index], value.isFinite else { return nil }
                return "\(f(px(x[index]))),\(f(py(value)))"
            }
            if !points.isEmpty {
                svg +=
                    "<polyline class=\"reference\" points=\"\(points.joined(separator: " "))\"><title>\(HTMLReport.escape(item.referenceName ?? "reference"))</title></polyline>\n"
            }
        }
        let points = item.values.indices.compactMap { index -> (Double, Double, Int)? in
            guard let value = item.values[index], value.isFinite else { return nil }
            return (px(x[index]), py(value), index)
        }
        if points.count > 1 {
            svg += "<polyline class=\"line\" points=\"\(points.map { "\(f($0.0)),\(f($0.1))" }.joined(separator: " "))\"/>\n"
        }
        for (cx, cy, index) in points {
            let value = item.values[index] ?? .nan
            let error = item.errors?[index].map { " ± \(Comparison.formatNumber($0))" } ?? ""
            svg +=
                "<circle class=\"point\" cx=\"\(f(cx))\" cy=\"\(f(cy))\" r=\"3.5\" data-step=\"\(steps[index].map(String.init) ?? "")\" data-value=\"\(HTMLReport.exact(value))\"><title>\(HTMLReport.escape(labels[index])): \(Comparison.formatNumber(value))\(error)</title></circle>\n"
        }
        if let name = item.referenceName, item.reference != nil {
            svg +=
                "<text class=\"axis legend\" x=\"\(f(left + plotWidth))\" y=\"14\" text-anchor=\"end\">dashed: \(HTMLReport.escape(name))</text>\n"
        }
        svg += "</svg>\n"
        return svg
    }
}
