import Foundation
import Testing

/// `--device` on the commands that run the forward. Without a usable GPU (every CI machine): `cuda` fails with one
/// line carrying the loader's report, `auto` runs on the CPU and says so, with the CPU's exact result.
@Suite struct DeviceCLITests {
    static let variant = "v022_softmax_basic"

    /// The CUDA libraries are searched only in an empty folder and the loader's normal path.
    static func environment(libraryFolder: URL) -> [String: String] {
        var environment = ProcessInfo.processInfo.environment
        environment["MOE_EVAL_CUDA_LIB_DIR"] = libraryFolder.path
        for key in ["VIRTUAL_ENV", "CONDA_PREFIX"] { environment[key] = nil }
        return environment
    }

    func forward(_ dir: URL, device: String?, output: String) throws -> CLI.Result {
        let fixture = dir.appendingPathComponent(Self.variant)
        return try CLI.execute(
            CLI.binary,
            [
                "forward", "--checkpoint", fixture.appendingPathComponent("checkpoint").path, "--model-args",
                fixture.appendingPathComponent("model_args.json").path, "--tokens-file",
                fixture.appendingPathComponent("tokens.json").path, "--output", dir.appendingPathComponent(output).path,
            ] + (device.map { ["--device", $0] } ?? []),
            environment: Self.environment(libraryFolder: dir.appendingPathComponent("no-cuda-here")))
    }

    @Test func rejectsAnUnknownDevice() throws {
        let dir = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent(Self.variant))
        defer { CLI.cleanUp(dir) }
        let r = try forward(dir, device: "gpu", output: "out.json")
        #expect(r.status != 0 && r.status < 128)
        #expect(r.stderr.contains("--device must be cpu, cuda or auto, not \"gpu\""), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.json").path))
    }

    @Test func cudaWithoutADeviceFailsWithOneLineHoldingTheLoaderReport() throws {
        let dir = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent(Self.variant))
        defer { CLI.cleanUp(dir) }
        let r = try forward(dir, device: "cuda", output: "out.json")
        if r.status == 0 { return } // a machine with a usable GPU: nothing to check here (tools/gpu/check.sh covers it)
        #expect(r.status < 128, "terminated by a signal: \(r.stderr)")
        #expect(r.stderrLines.count == 1, "expected one line, got: \(r.stderr)")
        #expect(r.stderr.hasPrefix("error: --device cuda: no CUDA device: "), "\(r.stderr)")
        // The report names the folder MOE_EVAL_CUDA_LIB_DIR pointed at, or (with a driver but no GPU) the driver.
        #expect(r.stderr.contains("no-cuda-here") || r.stderr.contains("libcuda"), "\(r.stderr)")
        #expect(!FileManager.default.fileExists(atPath: dir.appendingPathComponent("out.json").path))
    }

    @Test func autoWithoutADeviceRunsOnTheCPUAndSaysSo() throws {
        let dir = try CLI.scratch(copying: CLI.dsv3Fixtures.appendingPathComponent(Self.variant))
        defer { CLI.cleanUp(dir) }
        let auto = try forward(dir, device: "auto", output: "auto.json")
        #expect(auto.status == 0, "\(auto.stderr)")
        if auto.stderr.contains("device: auto chose CUDA") { return } // a usable GPU: the CPU fallback is not taken
        #expect(auto.stderr.contains("device: auto chose the CPU (no CUDA device: "), "\(auto.stderr)")
        let cpu = try forward(dir, device: nil, output: "cpu.json")
        #expect(cpu.status == 0, "\(cpu.stderr)")
        #expect(!cpu.stderr.contains("device:"), "the default (cpu) says nothing about devices: \(cpu.stderr)")
        let autoOutput = try Data(contentsOf: dir.appendingPathComponent("auto.json"))
        #expect(autoOutput == (try Data(contentsOf: dir.appendingPathComponent("cpu.json"))))
    }
}
