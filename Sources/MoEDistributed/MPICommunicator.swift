#if MPI
import CMPI
import Foundation
import MoEModels

/// `MPI_COMM_WORLD` as an expert-parallel communicator. Calls come from one thread (MPI_THREAD_FUNNELED);
/// errors are returned, not fatal, so that they surface as one line before the job is aborted.
final class MPICommunicator: ExpertParallelCommunicator {
    let rank: Int
    let size: Int
    /// `MPI_COMM_WORLD`, or a sub-group of it made by `split`.
    private let world: MPI_Comm

    convenience init() throws {
        var provided: Int32 = 0
        try Self.check(MPI_Init_thread(nil, nil, moe_mpi_thread_funneled(), &provided), "MPI_Init_thread")
        try self.init(communicator: moe_mpi_comm_world())
    }

    private init(communicator: MPI_Comm) throws {
        world = communicator
        try Self.check(MPI_Comm_set_errhandler(world, moe_mpi_errors_return()), "MPI_Comm_set_errhandler")
        var rank: Int32 = 0, size: Int32 = 0
        try Self.check(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
        try Self.check(MPI_Comm_size(world, &size), "MPI_Comm_size")
        self.rank = Int(rank)
        self.size = Int(size)
    }

    func split(groupSize: Int) throws -> any ExpertParallelCommunicator {
        guard groupSize >= 1, size % groupSize == 0 else {
            throw ExpertParallelError("MPI_Comm_split: groups of \(groupSize) do not divide \(size) processes")
        }
        var group: MPI_Comm? = nil
        try Self.check(MPI_Comm_split(world, Int32(rank / groupSize), Int32(rank), &group), "MPI_Comm_split")
        guard let group else { throw ExpertParallelError("MPI_Comm_split returned no communicator") }
        return try MPICommunicator(communicator: group)
    }

    static func check(_ code: Int32, _ call: String) throws {
        guard code != moe_mpi_success() else { return }
        var length: Int32 = 0
        var text = [CChar](repeating: 0, count: Int(moe_mpi_max_error_string()) + 1)
        MPI_Error_string(code, &text, &length)
        let message = String(decoding: text.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        throw ExpertParallelError("\(call) failed: \(message)")
    }

    /// MPI counts are 32-bit.
    private func counts(_ values: [Int], _ call: String) throws -> (counts: [Int32], displacements: [Int32]) {
        var displacements: [Int32] = [], position = 0
        for value in values {
            guard value >= 0, position <= Int(Int32.max) else {
                throw ExpertParallelError("\(call): \(position) bytes exceed MPI's 32-bit counts; use more processes or smaller batches")
            }
            displacements.append(Int32(position))
            position += value
        }
        guard position <= Int(Int32.max) else {
            throw ExpertParallelError("\(call): \(position) bytes exceed MPI's 32-bit counts; use more processes or smaller batches")
        }
        return (values.map { Int32($0) }, displacements)
    }

    func allToAll(_ send: [Int64], countPerRank: Int) throws -> [Int64] {
        var receive = [Int64](repeating: 0, count: countPerRank * size)
        try send.withUnsafeBufferPointer { s in
            try receive.withUnsafeMutableBufferPointer { r in
                try Self.check(
                    MPI_Alltoall(
                        s.baseAddress, Int32(countPerRank), moe_mpi_int64(),
                        r.baseAddress, Int32(countPerRank), moe_mpi_int64(), world), "MPI_Alltoall")
            }
        }
        return receive
    }

    func allToAllV(send: UnsafeRawPointer, sendCounts: [Int], receive: UnsafeMutableRawPointer, receiveCounts: [Int]) throws {
        let s = try counts(sendCounts, "MPI_Alltoallv"), r = try counts(receiveCounts, "MPI_Alltoallv")
        try Self.check(
            MPI_Alltoallv(
                send, s.counts, s.displacements, moe_mpi_byte(),
                receive, r.counts, r.displacements, moe_mpi_byte(), world), "MPI_Alltoallv")
    }

    func allGatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer, counts: [Int]) throws {
        let c = try self.counts(counts, "MPI_Allgatherv")
        try Self.check(
            MPI_Allgatherv(
                send, c.counts[rank], moe_mpi_byte(), receive, c.counts, c.displacements,
                moe_mpi_byte(), world), "MPI_Allgatherv")
    }

    func gatherV(send: UnsafeRawPointer, receive: UnsafeMutableRawPointer?, counts: [Int]) throws {
        let c = try self.counts(counts, "MPI_Gatherv")
        try Self.check(
            MPI_Gatherv(
                send, c.counts[rank], moe_mpi_byte(), receive, c.counts, c.displacements,
                moe_mpi_byte(), 0, world), "MPI_Gatherv")
    }

    func allGather(_ values: [Double]) throws -> [Double] {
        var receive = [Double](repeating: 0, count: values.count * size)
        try values.withUnsafeBufferPointer { s in
            try receive.withUnsafeMutableBufferPointer { r in
                try Self.check(
                    MPI_Allgather(
                        s.baseAddress, Int32(values.count), moe_mpi_double(),
                        r.baseAddress, Int32(values.count), moe_mpi_double(), world), "MPI_Allgather")
            }
        }
        return receive
    }

    func finalize() { MPI_Finalize() }

    func abort(code: Int32) -> Never {
        MPI_Abort(world, code)
        exit(code)
    }
}
#endif
