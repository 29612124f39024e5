import Foundation
import MoEData
import MoEJSON
import XCTest

/// Damaged and hostile parquet/Arrow files: each must give one `DataFileError` line naming the file.
final class DataCorruptionTests: XCTestCase {
    private typealias Element = CraftedParquet.SchemaElement

    // MARK: crafted files that are valid

    func testLegacyTwoLevelListOfStrings() throws {
        // optional group tags (LIST) { repeated binary str (UTF8) }: rows ["a", "b"], [], null.
        let repetition = CraftedParquet.levels([2, 0, 2, 1, 4, 0])
        let definition = CraftedParquet.levels([4, 2, 2, 1, 2, 0])
        let file = CraftedParquet.file(
            schema: [
                Element(name: "schema", children: 1),
                Element(name: "tags", repetition: 1, children: 1, converted: 3),
                Element(name: "str", type: 6, repetition: 2, converted: 0),
            ],
            rows: 3,
            columns: [
                (
                    6, ["tags", "str"], 4,
                    [.init(type: 0, body: repetition + definition + CraftedParquet.plainStrings(["a", "b"]), numValues: 4)]
                )
            ])
        let table = try Parquet.read(bytes: file, name: "legacy.parquet")
        XCTAssertEqual(table.rows, [["tags": .array([.string("a"), .string("b")])], ["tags": .array([])], ["tags": .null]])
    }

    // MARK: crafted hostile files

    private func singleInt32Column(pages: [CraftedParquet.Page], numValues: Int64 = 3, rows: Int64 = 3) -> [UInt8] {
        CraftedParquet.file(
            schema: [Element(name: "schema", children: 1), Element(name: "n", type: 1)],
            rows: rows, columns: [(1, ["n"], numValues, pages)])
    }

    func testCraftedBaselineReads() throws {
        let file = singleInt32Column(pages: [.init(type: 0, body: CraftedParquet.plainInt32([7, -1, 9]), numValues: 3)])
        XCTAssertEqual(try Parquet.read(bytes: file, name: "ok.parquet").rows, [["n": .int(7)], ["n": .int(-1)], ["n": .int(9)]])
    }

    func testDictionaryIndexOutOfRange() {
        // Dictionary of 2 values; ids: bit width 2, one RLE run of 3 × id 3.
        let file = singleInt32Column(pages: [
            .init(type: 2, body: CraftedParquet.plainInt32([10, 20]), numValues: 2),
            .init(type: 0, body: [2, 3 << 1, 3], numValues: 3, encoding: 8),
        ])
        let message = DataFixtures.assertDataFileError("dict.parquet") { try Parquet.read(bytes: file, name: "dict.parquet") }
        XCTAssertTrue(message?.contains("dictionary index 3 out of range") ?? false, message ?? "")
        XCTAssertTrue(message?.contains("row group 0, column n, page at byte") ?? false, message ?? "")
    }

    func testPageSizeLies() {
        let tooLong = singleInt32Column(pages: [
            .init(type: 0, body: CraftedParquet.plainInt32([1, 2, 3]), numValues: 3, compressedSize: 100_000)
        ])
        let message = DataFixtures.assertDataFileError("long.parquet") { try Parquet.read(bytes: tooLong, name: "long.parquet") }
        XCTAssertTrue(message?.contains("page body") ?? false, message ?? "")
        let wrongSize = singleInt32Column(pages: [
            .init(type: 0, body: CraftedParquet.plainInt32([1, 2, 3]), numValues: 3, uncompressedSize: 1 << 40)
        ])
        let sizeMessage = DataFixtures.assertDataFileError("size.parquet") { try Parquet.read(bytes: wrongSize, name: "size.parquet") }
        XCTAssertTrue(sizeMessage?.contains("header says") ?? false, sizeMessage ?? "")
        let fewValues = singleInt32Column(pages: [.init(type: 0, body: CraftedParquet.plainInt32([1, 2]), numValues: 3)])
        DataFixtures.assertDataFileError("few.parquet") { try Parquet.read(bytes: fewValues, name: "few.parquet") }
    }

    func testHugeValueCountsFailBeforeAllocating() {
        let file = singleInt32Column(pages: [.init(type: 0, body: [], numValues: 1 << 40)], numValues: 1 << 40, rows: 1 << 40)
        let message = DataFixtures.assertDataFileError("huge.parquet") { try Parquet.read(bytes: file, name: "huge.parquet") }
        XCTAssertTrue(message?.contains("plausibly") ?? false, message ?? "")
    }

    func testDeeplyNestedSchema() {
        let depth = 200
        var schema = [Element(name: "schema", children: 1)]
        for level in 0..<depth { schema.append(Element(name: "g\(level)", repetition: 1, children: 1)) }
        schema.append(Element(name: "leaf", type: 1, repetition: 1))
        let file = CraftedParquet.file(schema: schema, rows: 0, columns: [])
        let message = DataFixtures.assertDataFileError("deep.parquet") { try Parquet.read(bytes: file, name: "deep.parquet") }
        XCTAssertTrue(message?.contains("nested deeper") ?? false, message ?? "")
    }

    func testDeeplyNestedThriftFooter() {
        let footer = [UInt8](repeating: 0x1C, count: 5000) + [UInt8](repeating: 0, count: 5000)
        let message = DataFixtures.assertDataFileError("thrift.parquet") {
            try Parquet.read(bytes: Self.wrapFooter(footer), name: "thrift.parquet")
        }
        XCTAssertTrue(message?.contains("nested deeper") ?? false, message ?? "")
    }

    func testThriftListLongerThanTheFooter() {
        // Field 2 (schema) as a list of structs claiming 2^31 elements.
        let footer: [UInt8] = [0x29, 0xFC, 0x80, 0x80, 0x80, 0x80, 0x08, 0x00]
        let message = DataFixtures.assertDataFileError("list.parquet") {
            try Parquet.read(bytes: Self.wrapFooter(footer), name: "list.parquet")
        }
        XCTAssertTrue(message?.contains("longer than the data left") ?? false, message ?? "")
    }

    private static func wrapFooter(_ footer: [UInt8]) -> [UInt8] {
        let length = UInt32(footer.count)
        return Array("PAR1".utf8) + footer + [
            UInt8(length & 0xFF), UInt8(length >> 8 & 0xFF), UInt8(length >> 16 & 0xFF), UInt8(length >> 24),
        ] + Array("PAR1".utf8)
    }

    // MARK: damaged pyarrow files

    func testBadMagicFooterLengthAndThrift() throws {
        let good = try DataFixtures.bytes("flat_snappy_v1.parquet")
        var badStart = good
        badStart[0] = UInt8(ascii: "X")
        XCTAssertTrue(
            DataFixtures.assertDataFileError("a.parquet") { try Parquet.read(bytes: badStart, name: "a.parquet") }?.contains("PAR1")
                ?? false)
        var badEnd = good
        badEnd[badEnd.count - 1] = 0
        XCTAssertTrue(
            DataFixtures.assertDataFileError("b.parquet") { try Parquet.read(bytes: badEnd, name: "b.parquet") }?.contains("PAR1") ?? false)
        var longFooter = good
        longFooter.replaceSubrange((good.count - 8)..<(good.count - 4), with: [0xF0, 0xFF, 0xFF, 0x7F])
        let footerMessage = DataFixtures.assertDataFileError("c.parquet") { try Parquet.read(bytes: longFooter, name: "c.parquet") }
        XCTAssertTrue(footerMessage?.contains("beyond the file") ?? false, footerMessage ?? "")
        let footerLength = Int(good[good.count - 8]) | Int(good[good.count - 7]) << 8 | Int(good[good.count - 6]) << 16
        var badThrift = good
        let footerStart = good.count - 8 - footerLength
        badThrift.replaceSubrange(footerStart..<(footerStart + 16), with: [UInt8](repeating: 0xFF, count: 16))
        let thriftMessage = DataFixtures.assertDataFileError("d.parquet") { try Parquet.read(bytes: badThrift, name: "d.parquet") }
        XCTAssertTrue(thriftMessage?.contains("footer") ?? false, thriftMessage ?? "")
    }

    func testDecompressionFailuresAreNamed() throws {
        for (file, magic, codec) in [
            ("flat_zstd_v1.parquet", [0x28, 0xB5, 0x2F, 0xFD] as [UInt8], "ZSTD"),
            ("flat_gzip_v1.parquet", [0x1F, 0x8B, 0x08], "GZIP"),
        ] {
            var bytes = try DataFixtures.bytes(file)
            guard let at = (0..<(bytes.count - magic.count)).first(where: { Array(bytes[$0..<($0 + magic.count)]) == magic }) else {
                XCTFail("\(file): no \(codec) stream found")
                continue
            }
            bytes.replaceSubrange(at..<(at + magic.count), with: [UInt8](repeating: 0x55, count: magic.count))
            let message = DataFixtures.assertDataFileError(file) { try Parquet.read(bytes: bytes, name: file) }
            XCTAssertTrue(message?.contains(codec) ?? false, message ?? "")
            XCTAssertTrue(message?.contains("page at byte") ?? false, message ?? "")
        }
    }

    func testTruncatedParquetAtManyOffsets() throws {
        for file in ["nested_v1_snappy.parquet", "flat_zstd_v1.parquet", "flat_plain_v2.parquet"] {
            let bytes = try DataFixtures.bytes(file)
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 400)) {
                DataFixtures.assertDataFileError(file) { try Parquet.read(bytes: Array(bytes[0..<cut]), name: file) }
            }
        }
    }

    func testTruncatedArrowAtManyOffsets() throws {
        for file in ["stream_batches.arrow", "stream_zstd.arrow", "stream_legacy.arrow", "file_format.arrow", "datasets_arc.arrow"] {
            let bytes = try DataFixtures.bytes(file)
            // Every cut, including one exactly between messages, must be refused rather than read as fewer rows.
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 400)) + [
                bytes.count - 8, bytes.count - 4, bytes.count - 1,
            ] {
                DataFixtures.assertDataFileError(file) { try ArrowStream.read(bytes: Array(bytes[0..<cut]), name: file) }
            }
        }
    }

    func testRandomByteDamageNeverCrashes() throws {
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        var failures = 0
        var successes = 0
        for file in [
            "nested_v2_gzip_dict.parquet", "flat_dict_v2_zstd.parquet", "mmlu_like.parquet",
            "stream_batches.arrow", "stream_zstd.arrow", "datasets_arc.arrow",
        ] {
            let good = try DataFixtures.bytes(file)
            for _ in 0..<250 {
                var bytes = good
                for _ in 0..<(1 + next() % 4) { bytes[next() % bytes.count] = UInt8(truncatingIfNeeded: next()) }
                do {
                    _ =
                        file.hasSuffix(".arrow")
                        ? try ArrowStream.read(bytes: bytes, name: file) : try Parquet.read(bytes: bytes, name: file)
                    successes += 1
                } catch let error as DataFileError {
                    XCTAssertTrue(error.description.hasPrefix(file + ": ") && !error.description.contains("\n"), "\(error)")
                    failures += 1
                } catch {
                    XCTFail("\(file): \(type(of: error)) \(error)")
                }
            }
        }
        // Damage must be detected often; if nothing failed, the mutations did not reach the readers.
        XCTAssertGreaterThan(failures, 300, "failures \(failures), successes \(successes)")
    }
}
