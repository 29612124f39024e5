import Foundation
import MoEJSON

/// The report's detail tables for the router-insight keys and `task_routing` (docs/METRICS.md).
extension HTMLReport {
    static let insightColumns = [
        "jain_fairness_index", "gate_mass_coefficient_of_variation", "router_z_loss", "router_logit_std",
        "router_logit_absmax", "token_specialization", "next_layer_top1_nmi",
    ]

    static func insightTables(_ file: ResultsFile, layers: [(name: String, index: Int, metrics: JSONObject)], page: inout Page) {
        let present = insightColumns.filter { key in layers.contains { $0.metrics[key]?.doubleValue != nil } }
        if !present.isEmpty {
            page.raw("<h3>Router insight per layer</h3>\n<div class=\"scroll\"><table id=\"insight-table\"><tr><th>layer</th>")
            for key in present { page.raw("<th>\(escape(key))</th>") }
            page.raw("</tr>\n")
            for layer in layers.prefix(Limits.tableRows) {
                page.raw("<tr><td>\(escape(layer.name))</td>")
                for key in present { page.raw(valueCell("\(layer.name)/\(key)", layer.metrics[key] ?? .null)) }
                page.raw("</tr>\n")
            }
            page.raw("</table></div>\n")
        }
        guard let tasks = file.root["task_routing"]?.objectValue?["tasks"]?.arrayValue, !tasks.isEmpty else { return }
        page.raw(
            "<h3>Routing per task</h3>\n<div class=\"scroll\"><table id=\"task-routing-table\"><tr><th>task</th><th>tokens</th><th>mean KL to uniform (nats)</th><th>most specialised experts (layer/expert: share vs overall)</th></tr>\n"
        )
        for task in tasks.prefix(Limits.tableRows) {
            guard let object = task.objectValue else { continue }
            let label = object["label"]?.stringValue ?? "?"
            let experts = (object["most_specialised_experts"]?.arrayValue ?? []).compactMap { entry -> String? in
                guard let e = entry.objectValue, let layer = e["layer"]?.intValue, let expert = e["expert"]?.intValue,
                    let share = e["share"]?.doubleValue, let overall = e["overall_share"]?.doubleValue
                else { return nil }
                return String(format: "layer_%d/%d: %.3f vs %.3f", layer, expert, share, overall)
            }
            page.raw("<tr><td>\(escape(label))</td>")
            page.raw(valueCell("\(label)/tokens", object["tokens"] ?? .null))
            page.raw(valueCell("\(label)/mean_kl_to_uniform", object["mean_kl_to_uniform"] ?? .null))
            page.raw("<td>\(escape(experts.joined(separator: "; ")))</td></tr>\n")
        }
        page.raw("</table></div>\n")
        let divergences = file.root["task_routing"]?.objectValue?["divergences"]?.arrayValue ?? []
        guard !divergences.isEmpty else { return }
        page.raw(
            "<div class=\"scroll\"><table id=\"task-divergence-table\"><tr><th>task a</th><th>task b</th><th>mean Jensen–Shannon divergence (bits)</th></tr>\n"
        )
        for divergence in divergences.prefix(Limits.tableRows) {
            guard let object = divergence.objectValue else { continue }
            let a = object["a"]?.stringValue ?? "?", b = object["b"]?.stringValue ?? "?"
            page.raw("<tr><td>\(escape(a))</td><td>\(escape(b))</td>")
            page.raw(valueCell("\(a)/\(b)/mean_jensen_shannon", object["mean_jensen_shannon"] ?? .null))
            page.raw("</tr>\n")
        }
        page.raw("</table></div>\n")
    }
}
