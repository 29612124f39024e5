import Foundation
import MoEModels

#if canImport(Glibc)
import Glibc
#endif
#if MPI
import CMPI
#endif

/// The processes this run consists of: one, or those `mpirun` started (with the `MPI` trait).
public final class DistributedSession {
    /// Whether this binary was built with `--traits MPI`.
    public static var builtWithMPI: Bool {
        #if MPI
        return true
        #else
        return false
        #endif
    }

    /// Processes the launcher says it started (Open MPI, MPICH/Hydra, PMIx), or nil when not under a launcher.
    public static var launcherProcessCount: Int? {
        let environment = ProcessInfo.processInfo.environment
        for key in ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE", "MPI_LOCALNRANKS"] {
            if let value = environment[key], let n = Int(value) { return n }
        }
        return nil
    }

    public let rank: Int
    public let size: Int
    /// nil for a single process.
    public let communicator: (any ExpertParallelCommunicator)?
    public var isRoot: Bool { rank == 0 }
    private var finished = false

    private init(rank: Int, size: Int, communicator: (any ExpertParallelCommunicator)?) {
        self.rank = rank
        self.size = size
        self.communicator = communicator
    }

    /// Joins the launcher's processes when started by one; a single process otherwise. Refuses to let several
    /// copies of a binary built without MPI run side by side (each would evaluate everything and write results).
    public static func start() throws -> DistributedSession {
        let launched = launcherProcessCount
        #if MPI
        if launched != nil {
            let communicator = try MPICommunicator()
            return DistributedSession(
                rank: communicator.rank, size: communicator.size,
                communicator: communicator.size > 1 ? communicator : nil)
        }
        #endif
        if let launched, launched > 1 {
            throw ExpertParallelError(
                "started as one of \(launched) processes, but this moe-eval was built without MPI: build it with `swift build -c release --traits MPI` (docs/DISTRIBUTED.md)"
            )
        }
        return DistributedSession(rank: 0, size: 1, communicator: nil)
    }

    /// The expert-parallel group of this run. Its degree is `--ep` when given, else the config's
    /// `expert_parallel_degree` when that divides the process count, else the process count; with a degree
    /// below the process count the processes form data-parallel replicas of the expert group. Checked against
    /// the experts before any weight is read.
    public func expertParallelGroup(requestedDegree: Int?, configDegree: Int? = nil, numExperts: Int) throws -> ExpertParallelGroup? {
        var degree = size
        if let requestedDegree {
            guard requestedDegree >= 1, size % requestedDegree == 0 else {
                let how =
                    Self.builtWithMPI
                    ? "start a multiple of \(requestedDegree) processes: mpirun -np \(requestedDegree) moe-eval …"
                    : "this moe-eval was built without MPI (swift build -c release --traits MPI), then mpirun -np \(requestedDegree) moe-eval …"
                throw ExpertParallelError(
                    "--ep \(requestedDegree) needs a multiple of \(requestedDegree) processes, but this run has \(size): \(how)")
            }
            degree = requestedDegree
        } else if let configDegree, configDegree > 1, size % configDegree == 0, numExperts % configDegree == 0 {
            degree = configDegree
        }
        try ExpertParallelGroup.check(numExperts: numExperts, degree: degree)
        guard let communicator else { return nil }
        return try ExpertParallelGroup(communicator: communicator, numExperts: numExperts, degree: degree)
    }

    /// Leaves MPI after a successful run (every rank must call it).
    public func finish() {
        guard !finished else { return }
        finished = true
        #if MPI
        (communicator as? MPICommunicator)?.finalize()
        if communicator == nil, Self.launcherProcessCount != nil { MPICommunicator.finalizeIfInitialized() }
        #endif
    }

    /// Prints `message` naming this rank and ends every process of the job (MPI_Abort), so that no rank waits
    /// forever in a collective for one that failed.
    public func fail(_ message: String) -> Never {
        let prefix = size > 1 ? "moe-eval rank \(rank) of \(size): " : ""
        FileHandle.standardError.write(Data((prefix + message + "\n").utf8))
        #if MPI
        if let mpi = communicator as? MPICommunicator { mpi.abort(code: 1) }
        #endif
        exit(1)
    }
}

#if MPI
extension MPICommunicator {
    /// A single-process launch under mpirun initialised MPI; it must still be finalised.
    static func finalizeIfInitialized() {
        var initialized: Int32 = 0, finalized: Int32 = 0
        MPI_Initialized(&initialized)
        MPI_Finalized(&finalized)
        if initialized != 0 && finalized == 0 { MPI_Finalize() }
    }
}
#endif
