#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// This process's resident memory: the one reader behind the benchmark's memory figures and the per-rank report.
public enum ProcessMemory {
    public struct Reading: Sendable {
        /// Bytes resident now.
        public let residentBytes: Int
        /// The most bytes resident at any time so far.
        public let peakResidentBytes: Int
    }

    /// Both figures, or nil where the current one cannot be read (no /proc/self/status: not Linux).
    public static func read() -> Reading? {
        currentResidentIfKnown().map { Reading(residentBytes: $0, peakResidentBytes: peakResidentBytes()) }
    }

    /// Bytes resident now; the peak where the current figure cannot be read.
    public static func currentResidentBytes() -> Int { currentResidentIfKnown() ?? peakResidentBytes() }

    /// Peak resident set size in bytes (getrusage: kilobytes on Linux, bytes on macOS).
    public static func peakResidentBytes() -> Int {
        var usage = rusage()
        #if os(macOS)
        getrusage(RUSAGE_SELF, &usage)
        return Int(usage.ru_maxrss)
        #else
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Int(usage.ru_maxrss) * 1024
        #endif
    }

    /// VmRSS from /proc/self/status, in bytes.
    static func currentResidentIfKnown() -> Int? { kilobyteField("VmRSS:", in: "/proc/self/status") }

    /// MemAvailable of /proc/meminfo (what the kernel could give without swapping), in bytes; nil where it cannot
    /// be read (not Linux).
    public static func availableSystemBytes() -> Int? { kilobyteField("MemAvailable:", in: "/proc/meminfo") }

    /// The value of a "`key`   123456 kB" line of a /proc file, in bytes.
    static func kilobyteField(_ key: String, in path: String) -> Int? {
        #if os(Linux)
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            guard text.hasPrefix(key) else { continue }
            guard
                let kilobytes = text.dropFirst(key.count).split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" })
                    .first.flatMap({ Int($0) }),
                case (let bytes, false) = kilobytes.multipliedReportingOverflow(by: 1024)
            else { return nil }
            return bytes
        }
        #endif
        return nil
    }
}
