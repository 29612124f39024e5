import CFuzzDriver
import Foundation

/// What one fuzz target does with one input. Thrown errors are the parsers' clean refusals and count as
/// success; only a trap, a sanitizer report, a leak or a timeout is a finding.
nonisolated(unsafe) private var inputHandler: (([UInt8]) throws -> Void)?

// libFuzzer's runtime links its own `main`, which references this symbol; SwiftPM's `main` runs instead
// and hands control to libFuzzer through `LLVMFuzzerRunDriver`, so both paths end in the same handler.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    _ = try? inputHandler?(bytes)
    return 0
}

/// Runs libFuzzer with the process's arguments (corpus folders, `-max_total_time=…`), calling `handler` with
/// every input; never returns.
public func runFuzzer(_ handler: @escaping ([UInt8]) throws -> Void) -> Never {
    inputHandler = handler
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv) { data, size in fuzzTestOneInput(data, size) })
}

/// A private folder for parsers that only read from files (run.sh points `FUZZ_SCRATCH` at a tmpfs folder
/// it removes afterwards). Writing an input there costs microseconds, far less than a parse.
public enum ScratchFolder {
    public static let url: URL = {
        let base = ProcessInfo.processInfo.environment["FUZZ_SCRATCH"] ?? NSTemporaryDirectory()
        let folder = URL(fileURLWithPath: base).appendingPathComponent("fuzz-\(getpid())")
        try! FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        return folder
    }()

    /// Writes `bytes` as `name` inside the scratch folder (replacing the previous input) and returns its URL.
    public static func write(_ bytes: [UInt8], as name: String) -> URL {
        let file = url.appendingPathComponent(name)
        try! Data(bytes).write(to: file)
        return file
    }
}

/// Reads every byte of a view so that AddressSanitizer checks the whole range a parser handed out.
public func touchAll(_ bytes: UnsafeRawBufferPointer) -> UInt8 {
    bytes.reduce(0, ^)
}

/// Builds a value that lives for the whole run without leak checking its allocations: Swift keeps the payloads
/// of multi-payload (indirect) enums behind pointers with tag bits, which LeakSanitizer cannot follow, so a
/// long-lived tokenizer would otherwise be reported as leaked at the first input.
public func withoutLeakChecking<T>(_ body: () throws -> T) rethrows -> T {
    __lsan_disable()
    defer { __lsan_enable() }
    return try body()
}
