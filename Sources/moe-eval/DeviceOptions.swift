import ArgumentParser
import MoECUDA
import MoEModels

/// `--device cpu|cuda|auto` of the commands that run the forward (run, forward, bench, serve).
struct DeviceOptions: ParsableArguments {
    @Option(
        help: ArgumentHelp(
            "Where the forward runs: cpu, cuda or auto.",
            discussion:
                "cuda: one NVIDIA GPU of compute capability 8.0 or newer, loaded at run time (driver, cuBLAS, NVRTC; MOE_EVAL_CUDA_LIB_DIR names their folder); deepseek_v3 only. auto: cuda when such a device is found, else the CPU, saying which on stderr."
        ))
    var device: String = ComputeDevice.cpu.rawValue

    func validate() throws {
        guard ComputeDevice(rawValue: device) != nil else {
            throw ValidationError("--device must be cpu, cuda or auto, not \"\(device)\"")
        }
    }

    /// `spec` with the chosen device's placement.
    func placing(_ spec: ModelSpec) throws -> ModelSpec {
        var placed = spec
        placed.placement = try (ComputeDevice(rawValue: device) ?? .cpu).placement(note: { printError($0) })
        return placed
    }
}
