import Foundation
import Testing

/// Strings from results files reach the terminal as text: escape sequences in them are shown, not executed.
@Suite struct TerminalOutputCLITests {
    static func results(checkpoint: String, task: String) -> String {
        """
        {
          "routing_stats": {
            "layer_1": {"coefficient_of_variation": 0.15, "gini_coefficient": 0.12, "expert_utilization_rate": 1.0,
                        "tokens_per_expert_distribution": [500.0, 600.0, 660.0, 800.0]},
            "aggregate": {"avg_gini_coefficient": 0.11, "avg_coefficient_of_variation": 0.14, "avg_expert_utilization_rate": 0.96, "num_moe_layers": 1}
          },
          "lm_eval_results": {"\(task)": {"acc,none": 0.34, "acc_stderr,none": 0.048}},
          "checkpoint_dir": "\(checkpoint)",
          "eval_timestamp": "20260203_004013"
        }
        """
    }

    @Test func compareShowsEscapeSequencesFromFilesAsText() throws {
        let dir = try CLI.scratch()
        defer { CLI.cleanUp(dir) }
        let a = dir.appendingPathComponent("a.json"), b = dir.appendingPathComponent("b.json")
        // A window-title sequence, a colour and a C1 CSI, as JSON escapes.
        try Data(Self.results(checkpoint: #"step\u001b]0;owned\u0007-1"#, task: #"hella\u001b[31mswag"#).utf8).write(to: a)
        try Data(Self.results(checkpoint: #"step\u009b2J-2"#, task: #"hella\u001b[31mswag"#).utf8).write(to: b)
        let r = try CLI.run(["compare", a.path, b.path])
        #expect(r.status == 0, "\(r.stderr)")
        let controls = r.stdout.unicodeScalars.filter { ($0.value < 0x20 && $0 != "\n" && $0 != "\t") || (0x7F..<0xA0).contains($0.value) }
        #expect(controls.isEmpty, "control characters in: \(r.stdout.debugDescription)")
        #expect(r.stdout.contains(#"step\x1b]0;owned\x07-1"#), "\(r.stdout)")
        #expect(r.stdout.contains(#"step\x9b2J-2"#))
        #expect(r.stdout.contains(#"hella\x1b[31mswag"#))
    }
}
