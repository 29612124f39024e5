import Foundation
import Testing

/// ../shared is test infrastructure that only our CI has: the product never reads it, never defaults to it and never
/// names it. The README's main command runs here from a copy of the repository's tracked files with nothing beside it
/// and empty home and cache folders; no product file and no help text names ../shared or this machine's folders.
@Suite struct StandaloneCopyCLITests {
    /// What names the test infrastructure (`../shared/data`, `shared/reference`) or the development machines' folders.
    static let forbidden = ["../shared", "shared/", "/work/"]

    /// Scripts that are test infrastructure (scripts/test.sh and what it runs) and may use ../shared/data.
    static let testInfrastructure: Set = ["scripts/test.sh", "scripts/harness_agreement.sh"]

    static var isGitCheckout: Bool {
        FileManager.default.fileExists(atPath: CLI.repoRoot.appendingPathComponent(".git").path)
    }

    /// The repository's tracked files (as they are in the working tree) copied into `destination`.
    static func copyTrackedFiles(to destination: URL) throws {
        let listing = try CLI.execute(
            URL(fileURLWithPath: "/usr/bin/env"), ["git", "-C", CLI.repoRoot.path, "ls-files", "-z"])
        try #require(listing.status == 0, "git ls-files: \(listing.stderr)")
        let paths = listing.stdout.split(separator: "\0").map(String.init)
        try #require(paths.contains("scripts/demo.sh") && paths.contains("README.md"), "git ls-files listed \(paths.count) files")
        let files = FileManager.default
        for path in paths {
            let source = CLI.repoRoot.appendingPathComponent(path)
            // A tracked file deleted in the working tree is not part of what is being tested.
            guard (try? files.attributesOfItem(atPath: source.path)) != nil else { continue }
            let target = destination.appendingPathComponent(path)
            try files.createDirectory(at: target.deletingLastPathComponent(), withIntermediateDirectories: true)
            try files.copyItem(at: source, to: target)
        }
    }

    static func offenders(in text: String, _ extra: [String] = []) -> [String] {
        let needles = forbidden + extra
        return text.split(separator: "\n", omittingEmptySubsequences: false).enumerated().compactMap { index, line in
            needles.contains { line.contains($0) } ? "line \(index + 1): \(line.prefix(200))" : nil
        }
    }

    /// `bash scripts/demo.sh` (the README's first command, past installing and building: it runs the binary the tests
    /// use, placed where a build in the copy would put it) from a copy with no ../shared, HOME and the XDG and Hugging
    /// Face caches empty: it evaluates the copy's bundled demo, writes one results file, and neither its output nor the
    /// results name shared/ or the original checkout.
    @Test(
        .enabled(
            if: isGitCheckout || ProcessInfo.processInfo.environment["CI"] == "true",
            "needs a git checkout: the copy is made of its tracked files"))
    func readmeDemoRunsFromABareCopy() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let repo = scratch.appendingPathComponent("moe-eval")
        try Self.copyTrackedFiles(to: repo)
        try #require(!FileManager.default.fileExists(atPath: repo.appendingPathComponent("../shared").standardized.path))
        let binary = repo.appendingPathComponent(".build/release/moe-eval")
        try FileManager.default.createDirectory(at: binary.deletingLastPathComponent(), withIntermediateDirectories: true)
        // A hard link when the file system allows it: the binary is tens of MB. Not a symbolic link: moe-eval finds the
        // demo above its resolved path, which would then be the original checkout.
        do { try FileManager.default.linkItem(at: CLI.binary, to: binary) } catch {
            try FileManager.default.copyItem(at: CLI.binary, to: binary)
        }
        var environment = ["PATH": ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin", "MOE_EVAL_DEMO_BIN": binary.path]
        for (name, folder) in [
            ("HOME", "home"), ("XDG_CACHE_HOME", "cache"), ("XDG_CONFIG_HOME", "config"), ("XDG_DATA_HOME", "data"),
            ("HF_HOME", "huggingface"), ("TMPDIR", "tmp"),
        ] {
            let url = scratch.appendingPathComponent(folder)
            try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
            environment[name] = url.path
        }

        let r = try CLI.execute(
            URL(fileURLWithPath: "/bin/bash"), ["scripts/demo.sh"], environment: environment, in: repo)
        #expect(r.status == 0, "\(r.stderr)")
        let resultsFolder = repo.appendingPathComponent("outputs/eval")
        let names = (try? FileManager.default.contentsOfDirectory(atPath: resultsFolder.path)) ?? []
        let resultsNames = names.filter { $0.hasPrefix("eval_results_") && $0.hasSuffix(".json") }
        try #require(resultsNames.count == 1, "results files in \(resultsFolder.path): \(names)")
        let resultsFile = resultsFolder.appendingPathComponent(resultsNames[0])
        #expect(r.stdout.contains("results written to ") && r.stdout.contains(resultsNames[0]), "\(r.stdout)")
        let resultsText = try String(contentsOf: resultsFile, encoding: .utf8)
        let results = try #require(try JSONSerialization.jsonObject(with: Data(resultsText.utf8)) as? [String: Any])
        let copiedDemo = repo.resolvingSymlinksInPath().appendingPathComponent("assets/demo").path + "/"
        #expect((results["checkpoint_dir"] as? String)?.hasPrefix(copiedDemo) == true, "\(results["checkpoint_dir"] ?? "none")")
        #expect(!((results["lm_eval_results"] as? [String: Any]) ?? [:]).isEmpty, "the demo's bundled benchmark items were scored")

        let original = CLI.repoRoot.standardized.path + "/"
        for (what, text) in [("stdout", r.stdout), ("stderr", r.stderr), (resultsNames[0], resultsText)] {
            let found = Self.offenders(in: text, [original])
            #expect(found.isEmpty, "\(what) names shared/ or the original checkout:\n\(found.joined(separator: "\n"))")
        }
    }

    /// Every file of the product (Sources, scripts other than the test runners, the README) is free of ../shared and
    /// of this machine's paths.
    @Test func noProductFileNamesSharedOrTheMachine() throws {
        let root = CLI.repoRoot
        var files = ["README.md"]
        for folder in ["Sources", "scripts"] {
            let enumerator = try #require(FileManager.default.enumerator(atPath: root.appendingPathComponent(folder).path))
            for case let relative as String in enumerator {
                let path = "\(folder)/\(relative)"
                var isFolder: ObjCBool = false
                if FileManager.default.fileExists(atPath: root.appendingPathComponent(path).path, isDirectory: &isFolder),
                    !isFolder.boolValue, !Self.testInfrastructure.contains(path)
                {
                    files.append(path)
                }
            }
        }
        #expect(files.contains("Sources/MoEEval/Pipeline/ModelInputs.swift") && files.contains("scripts/demo.sh"))
        #expect(files.count > 100, "\(files.count) files scanned")
        var found: [String] = []
        for path in files {
            let text = String(decoding: try Data(contentsOf: root.appendingPathComponent(path)), as: UTF8.self)
            found += Self.offenders(in: text).map { "\(path) \($0)" }
        }
        #expect(found.isEmpty, "\(found.joined(separator: "\n"))")
    }

    /// `--help` and `--help-hidden` of the tool and of every subcommand (found in the help itself, so a new subcommand
    /// is covered) name neither ../shared nor this machine's folders nor the checkout the binary came from.
    @Test func noHelpTextNamesSharedOrTheMachine() throws {
        let scratch = try CLI.scratch()
        defer { CLI.cleanUp(scratch) }
        let original = CLI.repoRoot.standardized.path + "/"
        var pending: [[String]] = [[]]
        var seen: [String] = []
        while let command = pending.popLast() {
            for flag in ["--help", "--help-hidden"] {
                let r = try CLI.run(command + [flag], in: scratch)
                let name = (["moe-eval"] + command + [flag]).joined(separator: " ")
                #expect(r.status == 0, "\(name): \(r.stderr)")
                let found = Self.offenders(in: r.stdout + r.stderr, [original])
                #expect(found.isEmpty, "\(name):\n\(found.joined(separator: "\n"))")
                if flag == "--help" { pending += Self.subcommands(in: r.stdout).map { command + [$0] } }
            }
            seen.append(command.joined(separator: " "))
        }
        #expect(seen.count > 10 && seen.contains("run") && seen.contains("serve"), "\(seen)")
    }

    /// The names listed under SUBCOMMANDS in swift-argument-parser's help.
    static func subcommands(in help: String) -> [String] {
        var names: [String] = []
        var inSection = false
        for line in help.split(separator: "\n", omittingEmptySubsequences: false) {
            if line == "SUBCOMMANDS:" {
                inSection = true
            } else if inSection, line.isEmpty {
                // The list ends at its first blank line; "  See 'moe-eval help <subcommand>'…" follows it.
                inSection = false
            } else if inSection, line.hasPrefix("  "), !line.hasPrefix("   ") {
                names.append(String(line.dropFirst(2).prefix { !$0.isWhitespace }))
            }
        }
        return names
    }
}
