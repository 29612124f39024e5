import Foundation
import MoEJSON

/// `moe-eval report`: one self-contained HTML page for a results file (inline CSS and SVG, no scripts, no
/// network, no web fonts). The page is also well-formed XML, and every drawn number carries its exact value
/// from the file in a `data-*` attribute so that tests (and scripts) can check the picture against the JSON.
public enum HTMLReport {
    public static func render(_ file: ResultsFile) -> String {
        render([file], steps: [ResultsInputs.trainingStep(file)])
    }

    /// A dashboard for the last file (the latest checkpoint): verdicts first, then plots (trends over the
    /// files when there are several), then the details collapsed.
    public static func render(_ files: [ResultsFile], steps: [Int?], agreement: TrainingTrend.AgreementMeasure? = nil) -> String {
        guard let file = files.last else { return "" }
        var page = Page()
        let title = "moe-eval report: " + (file.checkpointDir ?? file.path)
        page.raw("<!DOCTYPE html>\n<html xmlns=\"http://www.w3.org/1999/xhtml\" lang=\"en\">\n<head>\n<meta charset=\"utf-8\"/>\n")
        page.raw("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"/>\n")
        page.raw("<title>\(escape(title))</title>\n<style>\(stylesheet)</style>\n</head>\n<body>\n")
        page.raw("<header><h1>MoE evaluation report</h1>\n<p class=\"sub\">\(escape(file.checkpointDir ?? file.path))")
        if let step = steps.last ?? nil { page.raw(" · step \(step)") }
        if let timestamp = file.timestamp { page.raw(" · \(escape(timestamp))") }
        if files.count > 1 { page.raw(" · latest of \(files.count) checkpoints") }
        page.raw("</p></header>\n")

        verdictSection(file, &page)
        if files.count > 1 {
            trendSection(TrainingTrend(files, steps: steps, agreement: agreement), files: files, &page)
        }
        routingPlots(file, &page)

        page.raw("<section id=\"details\"><h2>Details</h2>\n")
        let notes = self.notes(file)
        if !notes.isEmpty {
            page.raw("<details id=\"notes\" open=\"open\"><summary>Notes</summary><ul>\n")
            for note in notes { page.raw("<li>\(escape(note))</li>\n") }
            page.raw("</ul></details>\n")
        }
        routingDetails(file, &page)
        accuracySection(file, &page)
        inferenceSection(file, &page)
        costSection(file, &page)
        runSection(file, &page)
        page.raw("</section>\n<footer>Written by moe-eval. Metric definitions and bands: docs/METRICS.md.</footer>\n</body>\n</html>\n")
        return page.text
    }

    struct Page {
        var text = ""
        mutating func raw(_ s: String) { text += s }
    }

    /// Caps on what one drawing holds, so that the page stays under ~15 MB whatever the file holds (a heatmap cell
    /// costs ~330 bytes of SVG, so a full heatmap is ~5.5 MB; DeepSeek-V3's 58 layers × 256 experts still fit
    /// cell for cell): beyond them heatmap cells average groups of experts and layers, bars and table rows stop
    /// with a note, and the co-activation matrix shows the file's first pairs over at most 64 experts.
    public enum Limits {
        public static let heatmapColumns = 256
        public static let heatmapRows = 64
        public static let bars = 256
        public static let tableRows = 512
        public static let coactivationPairs = 256
        public static let coactivationExperts = 64
    }

    static func notes(_ file: ResultsFile) -> [String] {
        var notes: [String] = []
        for section in ResultsFile.metricSections where file.section(section) == nil {
            notes.append("This file has no \(section).")
        }
        if file.isSeedFormat {
            var note = "Written by the seed's scripts (no moe_eval record)."
            if file.section("computational_cost")?["active_params_billions"] != nil {
                note += " Its active_params_billions is the total parameter count."
            }
            if file.routingLayers.contains(where: { $0.metrics["max_violation"] == nil }) {
                note += " Per-layer MaxVio is computed here from tokens_per_expert_distribution."
            }
            notes.append(note)
        }
        return notes
    }

    // MARK: - Sections

    static func runSection(_ file: ResultsFile, _ page: inout Page) {
        var rows: [(String, JSONValue)] = []
        rows.append(("format", .string(file.isSeedFormat ? "seed (eval_moe_model.py)" : "moe-eval")))
        for key in ["checkpoint_dir", "eval_timestamp", "output_file", "walltime_seconds"] {
            if let value = file.root[key] { rows.append((key, value)) }
        }
        if let record = file.runRecord {
            rows += scalarLeaves(record, prefix: "moe_eval.")
        }
        if let args = file.root["model_args"]?.objectValue {
            rows += scalarLeaves(args, prefix: "model_args.")
        }
        if let config = file.root["config"]?.objectValue {
            for section in ["job", "model", "training", "parallelism"] {
                if let object = config[section]?.objectValue { rows += scalarLeaves(object, prefix: "config.\(section).") }
            }
        }
        page.raw("<details id=\"run\"><summary>Run</summary>\n")
        keyValueTable(rows, id: "run-table", page: &page)
        page.raw("</details>\n")
    }

    // MARK: - First screen

    /// One verdict: a headline value, its band and the rule that gave it.
    struct Verdict {
        var id: String
        var title: String
        var value: String
        var exact: Double?
        var band: SeedBand?
        var rule: String
    }

    static func verdicts(_ file: ResultsFile) -> [Verdict] {
        var verdicts: [Verdict] = []
        let aggregate = file.routingAggregate
        let layers = file.routingLayers
        func layerMean(_ key: String) -> Double? {
            let values = layers.compactMap { $0.metrics[key]?.doubleValue }.filter(\.isFinite)
            return values.isEmpty ? nil : values.reduce(0, +) / Double(values.count)
        }
        func headline(_ seedKey: String, _ summary: String) -> Double? {
            aggregate?[seedKey]?.doubleValue ?? aggregate?[summary]?.objectValue?["mean"]?.doubleValue ?? layerMean(summary)
        }
        let seedRules = [
            "gini": "seed bands: excellent < 0.1, good 0.1–0.2, poor > 0.3",
            "cv": "seed bands: excellent < 0.2, good 0.2–0.4, poor > 0.5",
            "utilization": "seed bands: excellent > 0.95, good 0.8–0.95, poor < 0.8",
        ]
        for (id, title, seedKey, summary) in [
            ("gini", "Gini", "avg_gini_coefficient", "gini_coefficient"),
            ("cv", "CV", "avg_coefficient_of_variation", "coefficient_of_variation"),
            ("utilization", "Utilisation", "avg_expert_utilization_rate", "expert_utilization_rate"),
        ] {
            guard let value = headline(seedKey, summary) else { continue }
            verdicts.append(
                Verdict(
                    id: id, title: title + " (mean over layers)", value: Comparison.formatNumber(value), exact: value,
                    band: SeedBand.of(metric: seedKey, value: value), rule: seedRules[id] ?? ""))
        }
        if let maxViolation = aggregate?["max_violation"]?.objectValue?["mean"]?.doubleValue ?? layerMean("max_violation") {
            let floor = layerMean("max_violation_noise_floor")
            let excess = maxViolation - (floor ?? 0)
            let band: SeedBand = excess <= 0.1 ? .excellent : excess <= 0.5 ? .good : excess <= 1 ? .fair : .poor
            let value = Comparison.formatNumber(maxViolation) + (floor.map { " (floor \(Comparison.formatNumber($0)))" } ?? "")
            verdicts.append(
                Verdict(
                    id: "maxvio", title: "MaxVio vs noise floor", value: value, exact: maxViolation, band: band,
                    rule: "excess over the floor: ≤ 0.1 excellent, ≤ 0.5 good, ≤ 1 fair (aux-loss level), > 1 poor"))
        }
        let dead = layers.compactMap { $0.metrics["dead_experts"]?.doubleValue }
        if !dead.isEmpty {
            let total = dead.reduce(0, +)
            let nearDead = layers.compactMap { $0.metrics["near_dead_experts"]?.doubleValue }.reduce(0, +)
            let band: SeedBand = total > 0 ? .poor : nearDead > 0 ? .fair : .excellent
            verdicts.append(
                Verdict(
                    id: "dead", title: "Dead experts (all layers)",
                    value: Comparison.formatNumber(total) + " dead, \(Comparison.formatNumber(nearDead)) near-dead",
                    exact: total, band: band, rule: "0 dead and 0 near-dead (< 0.1× balanced) excellent; near-dead fair; dead poor"))
        }
        for row in Comparison.accuracyRows([file]) where row.direction == .higherIsBetter {
            let name = row.metric.split(separator: ",").first.map(String.init) ?? row.metric
            guard let value = row.values.first ?? nil else { continue }
            let error = row.standardErrors.first ?? nil
            let documents = file.section("lm_eval_results")?[row.task]?.objectValue?["sample_len"]?.doubleValue
            verdicts.append(
                Verdict(
                    id: "acc-\(row.task)-\(name)", title: "\(row.task) \(name)",
                    value: Comparison.formatNumber(value) + (error.map { " ± \(Comparison.formatNumber($0))" } ?? ""), exact: value,
                    band: nil,
                    rule: documents.map { "± one standard error over \(Comparison.formatNumber($0)) documents" } ?? "± one standard error"))
        }
        return verdicts
    }

    static func verdictSection(_ file: ResultsFile, _ page: inout Page) {
        page.raw("<section id=\"verdict\"><h2>Is the router healthy?</h2>\n")
        let verdicts = verdicts(file)
        guard !verdicts.isEmpty else {
            page.raw("<p>This file has no routing statistics or accuracy to judge.</p></section>\n")
            return
        }
        page.raw("<div class=\"cards\">\n")
        for verdict in verdicts {
            let band = verdict.band?.rawValue ?? "info"
            page.raw(
                "<div class=\"card \(band)\" id=\"verdict-\(escape(verdict.id))\" data-band=\"\(band)\"\(verdict.exact.map { " data-value=\"\(exact($0))\"" } ?? "")>"
            )
            page.raw("<div class=\"card-title\">\(escape(verdict.title))</div><div class=\"card-value\">\(escape(verdict.value))</div>")
            if let band = verdict.band { page.raw("<span class=\"band \(band.rawValue)\">\(band.rawValue)</span>") }
            page.raw("<div class=\"card-rule\">\(escape(verdict.rule))</div></div>\n")
        }
        page.raw("</div></section>\n")
    }

    static func trendSection(_ trend: TrainingTrend, files: [ResultsFile], _ page: inout Page) {
        page.raw("<section id=\"trends\"><h2>Over training (\(files.count) checkpoints)</h2>\n<div class=\"plots\">\n")
        for item in trend.series { page.raw(trend.svg(item)) }
        page.raw(
            "</div>\n<details id=\"trend-files\"><summary>Checkpoints</summary><div class=\"scroll\"><table id=\"trend-table\"><tr><th>point</th><th>results file</th><th>checkpoint</th></tr>\n"
        )
        for (index, file) in files.enumerated() {
            page.raw(
                "<tr><td>\(escape(trend.labels[index]))</td><td>\(escape(file.path))</td><td>\(escape(file.checkpointDir ?? "—"))</td></tr>\n"
            )
        }
        page.raw("</table></div></details></section>\n")
    }

    static func routingPlots(_ file: ResultsFile, _ page: inout Page) {
        page.raw("<section id=\"plots\"><h2>Routing</h2>\n")
        let layers = file.routingLayers
        guard file.section("routing_stats") != nil, !layers.isEmpty else {
            page.raw("<p>No routing_stats\(file.section("routing_stats") == nil ? "" : " per layer") in this file.</p></section>\n")
            return
        }
        page.raw("<h3>Load per layer and expert (top-k assignments ÷ the balanced load; log scale)</h3>\n")
        page.raw(heatmap(layers, key: "tokens_per_expert_distribution", id: "load-heatmap"))
        page.raw("<div class=\"plots\">\n<div><h3>MaxVio per layer (red tick: noise floor)</h3>\n")
        let maxViolations = layers.map { layer -> Bar in
            if let value = layer.metrics["max_violation"]?.doubleValue {
                return Bar(layer: layer.name, value: value, floor: layer.metrics["max_violation_noise_floor"]?.doubleValue, computed: false)
            }
            return Bar(layer: layer.name, value: computedMaxViolation(layer.metrics), floor: nil, computed: true)
        }
        page.raw(bars(maxViolations, id: "maxvio-bars", zones: []))
        page.raw("</div>\n<div><h3>CV per layer (zones: seed bands; tick: noise floor)</h3>\n")
        page.raw(
            bars(
                layers.map {
                    Bar(
                        layer: $0.name, value: $0.metrics["coefficient_of_variation"]?.doubleValue,
                        floor: $0.metrics["coefficient_of_variation_noise_floor"]?.doubleValue, computed: false)
                }, id: "cv-bars", zones: [(0.2, .excellent), (0.4, .good), (0.5, .fair), (.infinity, .poor)]))
        page.raw("</div>\n</div>\n")
        coactivation(file, layers: layers, page: &page, onlyInformative: true)
        page.raw("</section>\n")
    }

    static func routingDetails(_ file: ResultsFile, _ page: inout Page) {
        guard file.section("routing_stats") != nil else {
            page.raw("<p>No routing_stats in this file.</p>\n")
            return
        }
        if let aggregate = file.routingAggregate {
            page.raw(
                "<details id=\"aggregate\"><summary>Routing aggregate over MoE layers</summary>\n<div class=\"scroll\"><table id=\"aggregate-table\"><tr><th>metric</th><th>value</th><th>seed band</th></tr>\n"
            )
            for (key, value) in Comparison.leaves(aggregate, textKeys: ["worst_layer"]) {
                page.raw("<tr><td>\(escape(key))</td>")
                page.raw(valueCell(key, value))
                let band = value.doubleValue.flatMap { SeedBand.of(metric: Comparison.baseName(key), value: $0) }
                page.raw(band.map { "<td><span class=\"band \($0.rawValue)\">\($0.rawValue)</span></td>" } ?? "<td></td>")
                page.raw("</tr>\n")
            }
            page.raw("</table></div></details>\n")
        }
        let layers = file.routingLayers
        guard !layers.isEmpty else {
            page.raw("<p>No per-layer entries.</p>\n")
            return
        }
        page.raw("<details id=\"layers\"><summary>Per-layer metrics</summary>\n")
        layerTable(layers, page: &page)
        insightTables(file, layers: layers, page: &page)
        page.raw("</details>\n")
        if layers.contains(where: { $0.metrics["top1_tokens_per_expert_distribution"] != nil }) {
            page.raw("<details id=\"top1\"><summary>First-choice (top-1) load per layer and expert</summary>\n")
            page.raw(heatmap(layers, key: "top1_tokens_per_expert_distribution", id: "top1-heatmap"))
            page.raw("</details>\n")
        }
        if let worst = worstLayer(file, layers: layers), let metrics = layers.first(where: { $0.name == worst })?.metrics,
            !isInformative(metrics)
        {
            page.raw(
                "<details id=\"coactivation\"><summary>Co-activated expert pairs (no pair fires together \(Comparison.formatNumber(informativeLift))× as often as independence predicts)</summary>\n"
            )
            coactivation(file, layers: layers, page: &page, onlyInformative: false)
            page.raw("</details>\n")
        }
    }

    static func inferenceSection(_ file: ResultsFile, _ page: inout Page) {
        page.raw("<details id=\"inference\"><summary>Latency and throughput</summary>\n")
        guard let inference = file.section("inference_performance") else {
            page.raw("<p>No inference_performance in this file.</p></details>\n")
            return
        }
        let headline = [
            "latency_ms", "throughput_tokens_per_sec", "prefill_latency_ms_p50", "prefill_latency_ms_p95",
            "prefill_tokens_per_sec", "time_to_first_token_ms_p50", "decode_latency_ms_per_token_p50",
            "decode_latency_ms_per_token_p95", "decode_tokens_per_sec", "memory_allocated_gb", "memory_reserved_gb",
        ]
        var rows: [(String, JSONValue)] = headline.compactMap { key in inference[key].map { (key, $0) } }
        rows += inference.entries.filter { !headline.contains($0.key) && $0.value.arrayValue == nil && $0.value.objectValue == nil }
        keyValueTable(rows, id: "inference-table", page: &page)
        page.raw("</details>\n")
    }

    static func costSection(_ file: ResultsFile, _ page: inout Page) {
        page.raw("<details id=\"cost\"><summary>Computational cost</summary>\n")
        guard let cost = file.section("computational_cost") else {
            page.raw("<p>No computational_cost in this file.</p></details>\n")
            return
        }
        let rows = cost.entries.filter { $0.value.arrayValue == nil && $0.value.objectValue == nil }
        keyValueTable(rows, id: "cost-table", page: &page)
        if file.isSeedFormat, cost["active_params_billions"] != nil {
            page.raw("<p class=\"note\">active_params_billions in a seed file is the total parameter count.</p>\n")
        }
        page.raw("</details>\n")
    }

    static func accuracySection(_ file: ResultsFile, _ page: inout Page) {
        guard let results = file.section("lm_eval_results") else { return }
        page.raw(
            "<details id=\"accuracy\" open=\"open\"><summary>Benchmark accuracy</summary>\n<div class=\"scroll\"><table id=\"accuracy-table\"><tr><th>task</th><th>metric</th><th>value</th><th>stderr</th></tr>\n"
        )
        for (task, value) in results.entries {
            guard let metrics = value.objectValue else { continue }
            for (metric, number) in metrics.entries where number.doubleValue != nil && !metric.contains("_stderr") {
                let error = metrics[Comparison.standardErrorKey(metric)] ?? .null
                page.raw("<tr><td>\(escape(task))</td><td>\(escape(metric))</td>")
                page.raw(valueCell("\(task)/\(metric)", number) + valueCell("\(task)/\(Comparison.standardErrorKey(metric))", error))
                page.raw("</tr>\n")
            }
        }
        page.raw("</table></div></details>\n")
    }

    // MARK: - Pieces

    static func scalarLeaves(_ object: JSONObject, prefix: String) -> [(String, JSONValue)] {
        var rows: [(String, JSONValue)] = []
        for (key, value) in object.entries {
            switch value {
            case .object(let inner): rows += scalarLeaves(inner, prefix: prefix + key + ".")
            case .array(let items) where items.allSatisfy({ $0.stringValue != nil }) && !items.isEmpty:
                rows.append((prefix + key, .string(items.compactMap(\.stringValue).joined(separator: ", "))))
            case .array: continue
            default: rows.append((prefix + key, value))
            }
        }
        return rows
    }

    static func keyValueTable(_ rows: [(String, JSONValue)], id: String, page: inout Page) {
        page.raw("<div class=\"scroll\"><table id=\"\(id)\"><tr><th>key</th><th>value</th></tr>\n")
        for (key, value) in rows { page.raw("<tr><td>\(escape(key))</td>\(valueCell(key, value))</tr>\n") }
        page.raw("</table></div>\n")
    }

    /// A table cell; numbers keep the file's exact value in `data-value`.
    static func valueCell(_ key: String, _ value: JSONValue) -> String {
        switch value {
        case .int, .double:
            let number = value.doubleValue ?? .nan
            return
                "<td class=\"num\" data-key=\"\(escape(key))\" data-value=\"\(exact(number))\">\(escape(Comparison.formatNumber(number)))</td>"
        case .string(let text): return "<td data-key=\"\(escape(key))\">\(escape(text))</td>"
        case .bool(let flag): return "<td data-key=\"\(escape(key))\">\(flag)</td>"
        case .null: return "<td data-key=\"\(escape(key))\">—</td>"
        default: return "<td></td>"
        }
    }

    /// The value as Swift prints it: the shortest text that reads back as the same Double.
    static func exact(_ value: Double) -> String { value.isFinite ? "\(value)" : value.isNaN ? "nan" : value > 0 ? "inf" : "-inf" }

    static func distribution(_ metrics: JSONObject, key: String) -> [Double]? {
        guard let items = metrics[key]?.arrayValue else { return nil }
        let values = items.compactMap(\.doubleValue)
        return values.count == items.count ? values : nil
    }

    /// MaxVio from the per-expert counts for files that lack it (the seed's), through the library's formula.
    static func computedMaxViolation(_ metrics: JSONObject) -> Double? {
        guard let counts = distribution(metrics, key: "tokens_per_expert_distribution"), !counts.isEmpty,
            counts.allSatisfy({ $0 >= 0 && $0.rounded() == $0 && $0 < 9e15 })
        else { return nil }
        return RoutingMetrics.maxViolation(counts.map { Int($0) })
    }

    /// Colour stops of the load scale, by log₁₀(load ÷ balanced load): red above balance, white at it, blue for
    /// cold experts, purple below the near-dead line (0.1×, docs/METRICS.md) fading to near-black at 0.001×;
    /// a dead expert (0) is pure black with a white cross, so 0, near-dead and cold never share a colour.
    static let loadStops: [(log10Ratio: Double, rgb: (Double, Double, Double))] = [
        (-3, (45, 0, 75)), (-1, (118, 42, 131)), (-0.5, (67, 147, 195)), (0, (255, 255, 255)),
        (log10(2), (244, 165, 130)), (log10(4), (178, 24, 43)), (log10(8), (103, 0, 13)),
    ]

    /// The colour of a load ratio on the continuous log scale of `loadStops` (clamped at its ends).
    static func loadColor(ratio: Double) -> String {
        guard ratio > 0 else { return "#000000" }
        let x = ratio.isFinite ? log10(ratio) : loadStops[loadStops.count - 1].log10Ratio
        var rgb = loadStops[0].rgb
        if x >= loadStops[loadStops.count - 1].log10Ratio {
            rgb = loadStops[loadStops.count - 1].rgb
        } else if x > loadStops[0].log10Ratio {
            for index in 1..<loadStops.count where x <= loadStops[index].log10Ratio {
                let (x0, c0) = loadStops[index - 1], (x1, c1) = loadStops[index]
                let t = (x - x0) / (x1 - x0)
                rgb = (c0.0 + (c1.0 - c0.0) * t, c0.1 + (c1.1 - c0.1) * t, c0.2 + (c1.2 - c0.2) * t)
                break
            }
        }
        let channel = { (value: Double) in Int(value.rounded()) }
        return String(format: "#%02x%02x%02x", channel(rgb.0), channel(rgb.1), channel(rgb.2))
    }

    static func heatmap(_ layers: [(name: String, index: Int, metrics: JSONObject)], key: String, id: String) -> String {
        let rows = layers.compactMap { layer in distribution(layer.metrics, key: key).map { (layer.name, $0) } }
        let experts = rows.map(\.1.count).max() ?? 0
        guard experts > 0 else { return "<p>No \(escape(key)) in this file.</p>\n" }
        let columnGroup = (experts + Limits.heatmapColumns - 1) / Limits.heatmapColumns
        let rowGroup = (rows.count + Limits.heatmapRows - 1) / Limits.heatmapRows
        let columns = (experts + columnGroup - 1) / columnGroup
        let drawnRows = (rows.count + rowGroup - 1) / rowGroup
        let cellWidth = max(3.0, min(28.0, 760.0 / Double(columns)))
        let cellHeight = drawnRows <= 40 ? 16.0 : max(4.0, 640.0 / Double(drawnRows))
        let left = 76.0, top = 22.0
        let legendWidth = 420.0
        let width = left + max(cellWidth * Double(columns), legendWidth) + 8, height = top + cellHeight * Double(drawnRows) + 48
        var svg = ""
        if columnGroup > 1 || rowGroup > 1 {
            svg +=
                "<p class=\"note\">\(rows.count) layers × \(experts) experts: each cell averages the load ratio of \(columnGroup) expert\(columnGroup == 1 ? "" : "s") × \(rowGroup) layer\(rowGroup == 1 ? "" : "s") (at most \(Limits.heatmapRows) × \(Limits.heatmapColumns) cells are drawn).</p>\n"
        }
        svg +=
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(id)\" class=\"heatmap\" data-source=\"\(escape(key))\" data-layers=\"\(rows.count)\" data-experts=\"\(experts)\" data-expert-group=\"\(columnGroup)\" data-layer-group=\"\(rowGroup)\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\">\n"
        svg += "<title>\(escape(key)) per layer and expert, colour = load ÷ balanced load</title>\n"
        let labelEvery = max(1, Int((Double(columns) / 32).rounded(.up)))
        for column in stride(from: 0, to: columns, by: labelEvery) {
            svg +=
                "<text class=\"axis\" x=\"\(fmt(left + (Double(column) + 0.5) * cellWidth))\" y=\"\(fmt(top - 6))\" text-anchor=\"middle\">\(column * columnGroup)</text>\n"
        }
        let ratios = rows.map { (_, counts) -> [Double] in
            let mean = counts.isEmpty ? 0 : counts.reduce(0, +) / Double(counts.count)
            return counts.map { mean > 0 ? $0 / mean : 0 }
        }
        for row in 0..<drawnRows {
            let members = (row * rowGroup)..<min(rows.count, (row + 1) * rowGroup)
            let name = members.count == 1 ? rows[members.lowerBound].0 : "\(rows[members.lowerBound].0)–\(rows[members.upperBound - 1].0)"
            let y = top + Double(row) * cellHeight
            if drawnRows <= 64 || row % Int((Double(drawnRows) / 64).rounded(.up)) == 0 {
                svg +=
                    "<text class=\"axis\" x=\"\(fmt(left - 6))\" y=\"\(fmt(y + cellHeight * 0.75))\" text-anchor=\"end\">\(escape(name))</text>\n"
            }
            for column in 0..<columns {
                let expertRange = (column * columnGroup)..<min(experts, (column + 1) * columnGroup)
                var total = 0.0, ratioSum = 0.0, cells = 0
                for member in members {
                    for expert in expertRange where expert < rows[member].1.count {
                        total += rows[member].1[expert]
                        ratioSum += ratios[member][expert]
                        cells += 1
                    }
                }
                guard cells > 0 else { continue }
                let ratio = ratioSum / Double(cells)
                let expertLabel =
                    expertRange.count == 1 ? "\(expertRange.lowerBound)" : "\(expertRange.lowerBound)–\(expertRange.upperBound - 1)"
                let tokenLabel = cells == 1 ? "" : "total "
                svg +=
                    "<rect x=\"\(fmt(left + Double(column) * cellWidth))\" y=\"\(fmt(y))\" width=\"\(fmt(cellWidth))\" height=\"\(fmt(cellHeight))\" fill=\"\(loadColor(ratio: ratio))\" data-layer=\"\(escape(name))\" data-expert=\"\(expertLabel)\" data-tokens=\"\(exact(total))\" data-ratio=\"\(exact(ratio))\">"
                svg +=
                    "<title>\(escape(name)) · expert \(expertLabel): \(tokenLabel)\(escape(Comparison.formatNumber(total))) (\(String(format: "%.3g", ratio))× balanced)</title></rect>\n"
                if total == 0 {
                    let x = left + Double(column) * cellWidth
                    svg +=
                        "<path class=\"dead\" d=\"M\(fmt(x + 2)) \(fmt(y + 2))L\(fmt(x + cellWidth - 2)) \(fmt(y + cellHeight - 2))M\(fmt(x + cellWidth - 2)) \(fmt(y + 2))L\(fmt(x + 2)) \(fmt(y + cellHeight - 2))\"/>\n"
                }
            }
        }
        // The legend: one continuous gradient over the scale's log range, ticks at round ratios, and a dead swatch.
        let legendY = top + cellHeight * Double(drawnRows) + 12
        let barWidth = 300.0, lowEnd = loadStops[0].log10Ratio, highEnd = loadStops[loadStops.count - 1].log10Ratio
        let gradient = "\(id)-scale"
        svg += "<defs><linearGradient id=\"\(gradient)\" x1=\"0\" x2=\"1\" y1=\"0\" y2=\"0\">"
        for stop in loadStops {
            svg +=
                "<stop offset=\"\(fmt((stop.log10Ratio - lowEnd) / (highEnd - lowEnd) * 100))%\" stop-color=\"\(loadColor(ratio: pow(10, stop.log10Ratio)))\"/>"
        }
        svg += "</linearGradient></defs>\n"
        svg +=
            "<rect class=\"legend-scale\" x=\"\(fmt(left))\" y=\"\(fmt(legendY))\" width=\"\(fmt(barWidth))\" height=\"10\" fill=\"url(#\(gradient))\" stroke=\"#999999\"/>\n"
        for tick in [0.001, 0.01, 0.1, 0.5, 1, 2, 4, 8] {
            let x = left + (log10(tick) - lowEnd) / (highEnd - lowEnd) * barWidth
            svg +=
                "<path d=\"M\(fmt(x)) \(fmt(legendY + 10))v4\" stroke=\"#666666\"/><text class=\"axis\" x=\"\(fmt(x))\" y=\"\(fmt(legendY + 24))\" text-anchor=\"middle\">\(Comparison.formatNumber(tick))×</text>\n"
        }
        let nearDeadX = left + (-1 - lowEnd) / (highEnd - lowEnd) * barWidth
        svg +=
            "<text class=\"axis\" x=\"\(fmt(nearDeadX - 4))\" y=\"\(fmt(legendY - 3))\" text-anchor=\"end\">near-dead ◂</text><text class=\"axis\" x=\"\(fmt(nearDeadX + 4))\" y=\"\(fmt(legendY - 3))\">▸ cold</text>\n"
        let deadX = left + barWidth + 24
        svg +=
            "<rect x=\"\(fmt(deadX))\" y=\"\(fmt(legendY - 1))\" width=\"14\" height=\"12\" fill=\"#000000\"/><path class=\"dead\" d=\"M\(fmt(deadX + 2)) \(fmt(legendY + 1))L\(fmt(deadX + 12)) \(fmt(legendY + 9))M\(fmt(deadX + 12)) \(fmt(legendY + 1))L\(fmt(deadX + 2)) \(fmt(legendY + 9))\"/><text class=\"axis\" x=\"\(fmt(deadX + 18))\" y=\"\(fmt(legendY + 9))\">0 (dead)</text>\n"
        svg += "</svg>\n"
        return svg
    }

    struct Bar {
        var layer: String
        var value: Double?
        var floor: Double?
        var computed: Bool
    }

    static func bars(_ bars: [Bar], id: String, zones: [(upper: Double, band: SeedBand)]) -> String {
        let finite = bars.filter { $0.value?.isFinite == true }
        guard !finite.isEmpty else { return "<p>Not in this file.</p>\n" }
        let drawn = Array(finite.prefix(Limits.bars))
        let omitted =
            finite.count > drawn.count
            ? "<p class=\"note\">\(finite.count - drawn.count) more layers are not drawn (at most \(Limits.bars)); the per-layer table lists them.</p>\n"
            : ""
        let finiteZones = zones.map(\.upper).filter(\.isFinite)
        let largest = max(drawn.map { max($0.value ?? 0, $0.floor ?? 0) }.max() ?? 0, 1e-12)
        // The seed's bands stay readable: the scale reaches past the last finite band edge.
        let scaleMax = finiteZones.isEmpty ? largest : max(largest, (finiteZones.max() ?? 0) * 1.1)
        let rowHeight = 18.0, left = 76.0, plot = 360.0
        let height = rowHeight * Double(drawn.count) + 8, width = left + plot + 90
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"\(id)\" class=\"bars\" data-layers=\"\(drawn.count)\" width=\"\(Int(width))\" height=\"\(Int(height))\" viewBox=\"0 0 \(Int(width)) \(Int(height))\" role=\"img\">\n"
        var lower = 0.0
        for zone in zones {
            let from = left + lower / scaleMax * plot, to = left + min(zone.upper, scaleMax) / scaleMax * plot
            if to > from {
                svg +=
                    "<rect class=\"zone \(zone.band.rawValue)\" x=\"\(fmt(from))\" y=\"0\" width=\"\(fmt(to - from))\" height=\"\(fmt(height))\" data-band=\"\(zone.band.rawValue)\"><title>seed band \(zone.band.rawValue)</title></rect>\n"
            }
            lower = zone.upper
        }
        for (row, bar) in drawn.enumerated() {
            let value = bar.value ?? 0
            let y = 4 + Double(row) * rowHeight
            let length = max(0, value) / scaleMax * plot
            svg += "<text class=\"axis\" x=\"\(fmt(left - 6))\" y=\"\(fmt(y + 12))\" text-anchor=\"end\">\(escape(bar.layer))</text>"
            let source = bar.computed ? " data-source=\"computed from tokens_per_expert_distribution\"" : ""
            svg +=
                "<rect class=\"bar\" x=\"\(fmt(left))\" y=\"\(fmt(y + 2))\" width=\"\(fmt(length))\" height=\"\(fmt(rowHeight - 5))\" data-layer=\"\(escape(bar.layer))\" data-value=\"\(exact(value))\"\(source)>"
            svg +=
                "<title>\(escape(bar.layer)): \(escape(Comparison.formatNumber(value)))\(bar.floor.map { " (noise floor \(Comparison.formatNumber($0)))" } ?? "")</title></rect>"
            if let floor = bar.floor, floor.isFinite {
                let x = left + max(0, floor) / scaleMax * plot
                svg +=
                    "<line class=\"floor\" x1=\"\(fmt(x))\" x2=\"\(fmt(x))\" y1=\"\(fmt(y))\" y2=\"\(fmt(y + rowHeight - 1))\" data-layer=\"\(escape(bar.layer))\" data-value=\"\(exact(floor))\"/>"
            }
            svg +=
                "<text class=\"axis\" x=\"\(fmt(left + length + 4))\" y=\"\(fmt(y + 12))\">\(escape(Comparison.formatNumber(value)))</text>\n"
        }
        svg += "</svg>\n"
        return svg + omitted
    }

    static func layerTable(_ layers: [(name: String, index: Int, metrics: JSONObject)], page: inout Page) {
        let columns = [
            "max_violation", "max_violation_noise_floor", "max_violation_batch_max", "coefficient_of_variation",
            "coefficient_of_variation_normalized", "gini_coefficient", "expert_utilization_rate",
            "effective_experts_fraction", "dead_experts", "near_dead_experts", "ep_overload_factor",
            "expert_bias_reroute_rate", "fragile_token_fraction", "aux_balance_loss",
        ]
        let present = columns.filter { key in layers.contains { $0.metrics[key]?.doubleValue != nil } }
        guard !present.isEmpty else { return }
        page.raw("<div class=\"scroll\"><table id=\"layer-table\"><tr><th>layer</th>")
        for key in present { page.raw("<th>\(escape(key))</th>") }
        page.raw("</tr>\n")
        for layer in layers.prefix(Limits.tableRows) {
            page.raw("<tr><td>\(escape(layer.name))</td>")
            for key in present { page.raw(valueCell("\(layer.name)/\(key)", layer.metrics[key] ?? .null)) }
            page.raw("</tr>\n")
        }
        page.raw("</table></div>\n")
        if layers.count > Limits.tableRows {
            page.raw(
                "<p class=\"note\">\(layers.count - Limits.tableRows) more layers are not listed (at most \(Limits.tableRows) rows).</p>\n")
        }
    }

    /// The worst layer: the aggregate's MaxVio worst layer, else the layer with the highest CV.
    static func worstLayer(_ file: ResultsFile, layers: [(name: String, index: Int, metrics: JSONObject)]) -> String? {
        if let name = file.routingAggregate?["max_violation"]?.objectValue?["worst_layer"]?.stringValue,
            layers.contains(where: { $0.name == name })
        {
            return name
        }
        var best: (String, Double)?
        for layer in layers {
            guard let cv = layer.metrics["coefficient_of_variation"]?.doubleValue else { continue }
            if best == nil || cv > best!.1 { best = (layer.name, cv) }
        }
        return best?.0 ?? layers.first?.name
    }

    /// A pair lift at least this far above independence (1) is worth a plot on the first screens.
    static let informativeLift = 1.5

    static func isInformative(_ metrics: JSONObject) -> Bool {
        let lifts = (metrics["top_coactivated_pairs"]?.arrayValue ?? []).compactMap { $0.objectValue?["lift"]?.doubleValue }.filter(
            \.isFinite)
        return (lifts.max() ?? 0) >= informativeLift
    }

    /// The co-activation matrix of the worst layer; with `onlyInformative`, only when some listed pair fires
    /// together at least `informativeLift` times as often as independence predicts.
    static func coactivation(
        _ file: ResultsFile, layers: [(name: String, index: Int, metrics: JSONObject)], page: inout Page,
        onlyInformative: Bool
    ) {
        guard let worst = worstLayer(file, layers: layers), let metrics = layers.first(where: { $0.name == worst })?.metrics else { return }
        if onlyInformative && !isInformative(metrics) { return }
        page.raw(
            "<h3>Co-activated expert pairs in the worst layer, \(escape(worst)) (lift = P(a,b) ÷ P(a)P(b); colours as in the heatmap)</h3>\n"
        )
        let listed: [(a: Int, b: Int, count: Double, lift: Double)] = (metrics["top_coactivated_pairs"]?.arrayValue ?? []).compactMap {
            item in
            guard let object = item.objectValue, let a = object["expert_a"]?.doubleValue, let b = object["expert_b"]?.doubleValue,
                let lift = object["lift"]?.doubleValue, a.isFinite, b.isFinite, abs(a) < 1e9, abs(b) < 1e9
            else { return nil }
            return (Int(a), Int(b), object["count"]?.doubleValue ?? 0, lift)
        }
        guard !listed.isEmpty else {
            page.raw("<p>No top_coactivated_pairs for this layer in the file.</p>\n")
            return
        }
        // The file lists pairs best first: keep its first ones while they fit the matrix's bounds.
        var pairs: [(a: Int, b: Int, count: Double, lift: Double)] = []
        var drawnExperts = Set<Int>()
        for pair in listed where pairs.count < Limits.coactivationPairs {
            let added = drawnExperts.union([pair.a, pair.b])
            if added.count > Limits.coactivationExperts { continue }
            drawnExperts = added
            pairs.append(pair)
        }
        if pairs.count < listed.count {
            page.raw(
                "<p class=\"note\">Showing the first \(pairs.count) of \(listed.count) pairs (at most \(Limits.coactivationPairs) pairs over \(Limits.coactivationExperts) experts).</p>\n"
            )
        }
        let baseline = metrics["coactivation_lift_uniform_baseline"]?.doubleValue
        let experts = drawnExperts.sorted()
        let cell = 26.0, left = 40.0, top = 30.0
        let size = cell * Double(experts.count)
        var svg =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" id=\"coactivation-matrix\" class=\"matrix\" data-layer=\"\(escape(worst))\" data-pairs=\"\(pairs.count)\" width=\"\(Int(left + size + 10))\" height=\"\(Int(top + size + 10))\" viewBox=\"0 0 \(Int(left + size + 10)) \(Int(top + size + 10))\" role=\"img\">\n"
        svg += "<title>lift of the top co-activated pairs in \(escape(worst))</title>\n"
        for (i, expert) in experts.enumerated() {
            let center = Double(i) * cell + cell / 2
            svg += "<text class=\"axis\" x=\"\(fmt(left + center))\" y=\"\(fmt(top - 8))\" text-anchor=\"middle\">\(expert)</text>"
            svg += "<text class=\"axis\" x=\"\(fmt(left - 6))\" y=\"\(fmt(top + center + 4))\" text-anchor=\"end\">\(expert)</text>\n"
        }
        // One background and grid lines, not a rectangle per cell: the matrix grows with the pairs drawn.
        svg += "<rect x=\"\(fmt(left))\" y=\"\(fmt(top))\" width=\"\(fmt(size))\" height=\"\(fmt(size))\" fill=\"#f4f4f4\"/>\n"
        for line in 1..<max(1, experts.count) {
            svg +=
                "<path d=\"M\(fmt(left)) \(fmt(top + Double(line) * cell))h\(fmt(size))M\(fmt(left + Double(line) * cell)) \(fmt(top))v\(fmt(size))\" stroke=\"#ffffff\"/>"
        }
        svg += "\n"
        for pair in pairs {
            guard let i = experts.firstIndex(of: pair.a), let j = experts.firstIndex(of: pair.b) else { continue }
            // The heatmap's scale: 1 = independent (white), above red, below blue.
            let fill = loadColor(ratio: pair.lift)
            for (row, column) in [(i, j), (j, i)] {
                svg +=
                    "<rect class=\"pair\" x=\"\(fmt(left + Double(column) * cell))\" y=\"\(fmt(top + Double(row) * cell))\" width=\"\(fmt(cell))\" height=\"\(fmt(cell))\" fill=\"\(fill)\" stroke=\"#ffffff\" data-expert-a=\"\(pair.a)\" data-expert-b=\"\(pair.b)\" data-count=\"\(exact(pair.count))\" data-lift=\"\(exact(pair.lift))\">"
                svg +=
                    "<title>experts \(pair.a) + \(pair.b): \(Comparison.formatNumber(pair.count)) tokens, lift \(String(format: "%.3f", pair.lift))</title></rect>\n"
            }
        }
        svg += "</svg>\n"
        page.raw(
            "<div class=\"row\">\(svg)<div class=\"scroll\"><table id=\"coactivation-table\"><tr><th>expert a</th><th>expert b</th><th>tokens</th><th>lift</th></tr>\n"
        )
        for pair in pairs {
            page.raw(
                "<tr><td>\(pair.a)</td><td>\(pair.b)</td>\(valueCell("count", .double(pair.count)))\(valueCell("lift", .double(pair.lift)))</tr>\n"
            )
        }
        page.raw("</table></div></div>\n")
        if let baseline {
            page.raw(
                "<p class=\"note\">Uniform random top-k routing gives every pair lift \(escape(Comparison.formatNumber(baseline))); above it, a pair fires together more often than independence predicts.</p>\n"
            )
        }
    }

    static func fmt(_ value: Double) -> String { String(format: "%.1f", value) }

    /// Text and attribute escaping for HTML that is also XML.
    public static func escape(_ text: String) -> String {
        var out = ""
        out.reserveCapacity(text.utf8.count)
        for scalar in text.unicodeScalars {
            switch scalar {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default:
                // Control characters are not allowed in XML 1.0 at all.
                if scalar.value < 0x20 && scalar != "\n" && scalar != "\t" { out += " " } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out
    }

    static let stylesheet = """

        body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 1em auto; max-width: 1200px; color: #1a1a1a; padding: 0 1em; }
        h1 { margin: 0 0 0.1em; font-size: 1.5em; } h2 { border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin: 1em 0 0.5em; font-size: 1.2em; }
        h3 { font-size: 1em; margin: 0.8em 0 0.3em; }
        .sub, .note, footer { color: #555; font-size: 0.9em; margin: 0.2em 0; }
        h1, h2, h3, p, li, summary, .card { overflow-wrap: anywhere; }
        .cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 0.6em; }
        .card { border: 1px solid #ddd; border-left: 6px solid #999; border-radius: 4px; padding: 0.4em 0.6em; }
        .card.excellent { border-left-color: #2e9d46; } .card.good { border-left-color: #9bc53d; } .card.fair { border-left-color: #e0a800; } .card.poor { border-left-color: #c0392b; }
        .card-title { font-size: 0.85em; color: #444; } .card-value { font-size: 1.15em; font-weight: 600; margin: 0.15em 0; font-variant-numeric: tabular-nums; }
        .card-rule { font-size: 0.75em; color: #666; margin-top: 0.2em; }
        .plots { display: flex; flex-wrap: wrap; gap: 0.4em 1.2em; align-items: flex-start; }
        .scroll { overflow-x: auto; max-width: 100%; }
        table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.88em; }
        th, td { border: 1px solid #ddd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
        td.num { text-align: right; font-variant-numeric: tabular-nums; }
        th { background: #f4f4f4; }
        details { margin: 0.4em 0; } summary { cursor: pointer; font-weight: 600; }
        svg { display: block; margin: 0.4em 0; max-width: 100%; height: auto; }
        svg .axis { font-size: 10px; fill: #444; } svg .plot-title { font-size: 12px; font-weight: 600; fill: #1a1a1a; }
        svg .bar { fill: #4a7ab5; } svg .floor { stroke: #c0392b; stroke-width: 2; } svg .dead { stroke: #ffffff; stroke-width: 1.2; }
        svg .frame { fill: none; stroke: #999; } svg .line { fill: none; stroke: #4a7ab5; stroke-width: 2; } svg .point { fill: #4a7ab5; }
        svg .reference { fill: none; stroke: #c0392b; stroke-dasharray: 4 3; } svg .se-band { fill: #4a7ab5; fill-opacity: 0.18; }
        svg .zone { fill-opacity: 0.35; } svg .zone.excellent { fill: #d4f0d4; } svg .zone.good { fill: #e6f2c8; } svg .zone.fair { fill: #fbeec2; } svg .zone.poor { fill: #f7d0cc; }
        .band { padding: 0.05em 0.5em; border-radius: 0.6em; font-size: 0.85em; }
        .band.excellent { background: #d4f0d4; } .band.good { background: #e6f2c8; } .band.fair { background: #fbeec2; } .band.poor { background: #f7d0cc; }
        .row { display: flex; gap: 2em; align-items: flex-start; flex-wrap: wrap; }
        footer { margin-top: 2em; }
        @media print {
          body { max-width: none; margin: 0; font-size: 10pt; }
          .scroll { overflow: visible; }
          details > summary { list-style: none; }
          details::details-content { content-visibility: visible; display: block; }
          details:not([open]) > *:not(summary) { display: block; }
          .card, svg, table { break-inside: avoid; }
          a { color: inherit; text-decoration: none; }
        }

        """
}
