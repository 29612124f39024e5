import Foundation
import MoEEval
import MoEJSON
import MoEModels
import Testing

/// `moe-eval run` is the library's evaluation pipeline behind options: on the bundled demo model the binary and
/// a direct library call give the same routing statistics, model, config and cost figures.
@Suite struct PipelineAgreementCLITests {
    final class SilentProgress: EvaluationProgress {
        func update(_ message: String) {}
        func done(_ message: String) {}
        func note(_ message: String) {}
    }

    @Test func libraryRunMatchesTheCLIOnTheDemo() throws {
        let cliOut = try CLI.scratch(), libraryOut = try CLI.scratch()
        defer { CLI.cleanUp(cliOut); CLI.cleanUp(libraryOut) }
        let r = try CLI.run(["run", "--preset", "30s", "--quiet", "--output-dir", cliOut.path], in: CLI.repoRoot)
        #expect(r.status == 0, "\(r.stderr)")
        let cliFile = try #require(try FileManager.default.contentsOfDirectory(atPath: cliOut.path).first { $0.hasSuffix(".json") })
        let cli = try ResultsFile.load(cliOut.appendingPathComponent(cliFile))

        let inputs = try ModelInputs.resolve(ModelSpec(checkpoint: URL(fileURLWithPath: ".")), checkpointGiven: false, tokenizer: nil)
        var options = EvaluationOptions(preset: try #require(Preset.named("30s")))
        options.outputDir = libraryOut.path
        let (_, written) = try EvaluationPipeline(
            inputs: inputs, options: options, processes: try EvaluationProcesses.start(),
            progress: SilentProgress()
        ).run()
        let library = try ResultsFile.load(try #require(written))

        #expect(Set(cli.root.keys) == Set(library.root.keys))
        #expect(cli.root["routing_stats"] != nil && cli.root["routing_stats"] == library.root["routing_stats"])
        for key in ["model_args", "config", "lm_eval_results", "checkpoint_dir", "inference_performance"] {
            #expect(cli.root[key] == library.root[key], "\(key)")
        }
        for key in [
            "num_flops_per_token", "total_flops", "active_params_billions", "total_params_billions", "forward_flops_per_token",
            "measured_forward_tokens", "flops_seq_len",
        ] {
            #expect(cli.root["computational_cost"]?[key] == library.root["computational_cost"]?[key], "\(key)")
        }
        let cliRecord = try #require(cli.runRecord), libraryRecord = try #require(library.runRecord)
        #expect(Set(cliRecord.keys) == Set(libraryRecord.keys))
        // fp32 products unless asked otherwise (issue 15), whatever this CPU has.
        #expect(cliRecord["compute"]?["precision"]?.stringValue == "fp32")
        for key in ["preset", "seed", "routing_input", "lm_eval", "key_naming", "numerics", "model_args_origin", "compute"] {
            if key == "routing_input" {
                // Everything but the measured rate.
                for field in ["kind", "source", "samples", "seq_len", "text_tokens", "windows_overlap"] {
                    #expect(cliRecord[key]?[field] == libraryRecord[key]?[field], "routing_input.\(field)")
                }
            } else {
                #expect(cliRecord[key] == libraryRecord[key], "\(key)")
            }
        }
    }
}
