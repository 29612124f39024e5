import ArgumentParser
import Foundation
import MoEDistributed
import MoEEval
import MoEModels

/// `--ep`: expert parallelism over the processes `mpirun` started (docs/DISTRIBUTED.md).
struct DistributedOptions: ParsableArguments {
    @Option(
        name: .customLong("ep"),
        help: ArgumentHelp(
            "Expert-parallel degree; must equal the number of MPI processes (default: that number).",
            discussion:
                "mpirun -np N moe-eval … places experts r·E/N ..< (r+1)·E/N on rank r, as TorchTitan's expert parallelism does; needs a build with --traits MPI."
        ))
    var ep: Int?

    func validate() throws {
        if let ep, ep < 1 { throw ValidationError("--ep must be ≥ 1") }
    }
}

/// Runs a command on the processes `mpirun` started (or just this one): on any rank's error the message
/// names the rank and every process stops.
enum DistributedRun {
    static func run(_ body: (EvaluationProcesses) throws -> Void) throws {
        let session: DistributedSession
        do {
            session = try DistributedSession.start()
        } catch {
            printError("error: \(String(describing: error))")
            throw ExitCode(1)
        }
        do {
            try body(EvaluationProcesses(session: session))
        } catch let error as ExitCode {
            if error.rawValue != 0 && session.size > 1 { session.fail("stopping the job") }
            session.finish()
            throw error
        } catch let error as ValidationError {
            if session.size > 1 { session.fail("error: \(error.message)") }
            session.finish()
            throw error
        } catch {
            if session.size > 1 { session.fail("error: \(String(describing: error))") }
            session.finish()
            printError("error: \(String(describing: error))")
            throw ExitCode(1)
        }
        session.finish()
    }
}

extension EvaluationProcesses {
    /// The group `--ep` and the process count ask for (nil for one process).
    func makeGroup(options: DistributedOptions, spec: ModelSpec, configDegree: Int?) throws -> ExpertParallelGroup? {
        try makeGroup(requestedDegree: options.ep, spec: spec, configDegree: configDegree, note: { printError("note: " + $0) })
    }
}
