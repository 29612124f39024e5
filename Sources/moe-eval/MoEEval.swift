import ArgumentParser

@main
struct MoEEvalCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "moe-eval",
        abstract: "Evaluate TorchTitan Mixture-of-Experts checkpoints natively: routing, speed, cost, accuracy.",
        subcommands: [
            RunCommand.self, InspectCommand.self, ForwardCommand.self, TokenizeCommand.self, BenchCommand.self, CompareCommand.self,
            AgreementCommand.self, ReportCommand.self, ServeCommand.self, ConvertCommand.self,
        ]
    )

    static func main() {
        BLASCore.selectFastKernels()
        main(nil)
    }
}
