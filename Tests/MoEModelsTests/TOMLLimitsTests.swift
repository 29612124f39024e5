import Foundation
import Testing

@testable import MoEModels

/// Configs that would make TOMLKit (toml++) recurse until the stack overflows are refused first, naming the line.
@Suite struct TOMLLimitsTests {
    static func message(_ text: String) -> String? {
        do {
            _ = try TrainConfig.parse(text, path: "hostile.toml")
            return nil
        } catch {
            return String(describing: error)
        }
    }

    @Test func dottedKeyWithThousandsOfPartsIsRefused() {
        let key = (0..<5_000).map { "k\($0)" }.joined(separator: ".")
        let text = "[model]\nname = \"deepseek_v3\"\n\n\(key) = 1\n"
        let message = Self.message(text)
        #expect(message == "hostile.toml: line 4: a dotted key or table name with more than 32 parts", "\(message ?? "no error")")
    }

    /// tools/fuzz/findings/FuzzTrainConfig/crash-tomlpp-assert-non-ascii-table-key.toml: `[é]` aborted inside toml++.
    @Test func nonASCIIOutsideStringsIsRefused() {
        let expected =
            "hostile.toml: line 1: a non-ASCII character outside a string (bare keys and values are ASCII in TOML; quote the key or value)"
        #expect(Self.message("[\u{e9}]\n") == expected)
        #expect(Self.message("k\u{e9}y = 1\n") == expected)
        #expect(Self.message("[model]\nname = \"d\u{e9}mo\" # caf\u{e9}\n")?.contains("non-ASCII") != true)
    }

    /// tools/fuzz/findings/FuzzTrainConfig/crash-tomlpp-assert-header-without-key.toml: `[` alone on a line aborted in toml++.
    @Test func tableHeaderWithoutAKeyIsRefused() {
        for header in ["[", "[=]", "[.a]", "[#]", "[[ .a]]", "[,]", "[\t"] {
            #expect(
                Self.message("x = 1\n\(header)\ny = 2\n")
                    == "hostile.toml: line 2: a table header without a name (expected a key after '[')", "\(header)")
        }
        #expect(Self.message("[model]\nname = \"a\"\n[ \"quoted\" ]\nx = 1\n[[list]]\ny = 2\n")?.contains("without a name") != true)
    }

    @Test func deepTableHeaderIsRefused() {
        let header = "[" + (0..<5_000).map { "t\($0)" }.joined(separator: ".") + "]"
        #expect(Self.message("# comment\n\(header)\nx = 1\n")?.hasPrefix("hostile.toml: line 2: a dotted key") == true)
    }

    @Test func dottedKeysInsideInlineTablesCount() {
        let key = (0..<100).map { "k\($0)" }.joined(separator: ".")
        #expect(Self.message("[model]\nx = { a = 1, \(key) = 2 }\n")?.hasPrefix("hostile.toml: line 2: a dotted key") == true)
    }

    @Test func deeplyNestedArraysAndInlineTablesAreRefused() {
        let arrays = "[model]\nx = " + String(repeating: "[", count: 5_000) + String(repeating: "]", count: 5_000) + "\n"
        #expect(Self.message(arrays) == "hostile.toml: line 2: arrays or inline tables nested more than 32 deep")
        let tables = "[model]\n\nx = " + String(repeating: "{a=", count: 5_000) + "1" + String(repeating: "}", count: 5_000) + "\n"
        #expect(Self.message(tables) == "hostile.toml: line 3: arrays or inline tables nested more than 32 deep")
    }

    /// Dots and brackets inside strings, comments, numbers and multi-line strings are not keys or nesting.
    @Test func ordinaryConfigsStillLoad() throws {
        let dots = String(repeating: ".", count: 200)
        let brackets = String(repeating: "[", count: 100)
        let text = """
            [model]
            name = "deepseek_v3" # a.b.c.d\(dots)
            flavor = "debugmodel"
            hf_assets_path = '\(dots)/\(brackets)'
            "quoted.key.with.dots\(dots)" = 1.5
            notes = \"\"\"
            multi \(brackets) line \(dots) "quoted"
            \"\"\"
            literal = '''\(brackets)'''
            a.b.c = 2
            values = [[1.5, 2.5], [3.25e-3, 4.0], { x.y = 1 }]

            [training]
            seq_len = 4096
            """
        let config = try TrainConfig.parse(text, path: "ok.toml")
        #expect(config.modelName == "deepseek_v3" && config.seqLen == 4096)
        #expect(config.hfAssetsPath == "\(dots)/\(brackets)")
    }

    @Test func bundledDemoConfigLoads() throws {
        let demo = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("assets/demo/train.toml")
        #expect(try TrainConfig.load(demo).modelName == "deepseek_v3")
    }

    @Test func hugeConfigFileIsRefusedBeforeReading() throws {
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("huge-\(UUID().uuidString).toml")
        defer { try? FileManager.default.removeItem(at: file) }
        FileManager.default.createFile(atPath: file.path, contents: nil)
        let handle = try FileHandle(forWritingTo: file)
        try handle.truncate(atOffset: UInt64(TOMLLimits.maximumBytes) + 1)
        try handle.close()
        let message = try #require(throws: ModelArgsError.self) { try TrainConfig.load(file) }
        #expect(String(describing: message).hasPrefix("\(file.path): \(TOMLLimits.maximumBytes + 1) bytes"))
    }
}
