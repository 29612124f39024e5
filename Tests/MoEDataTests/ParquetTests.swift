import Foundation
import MoEJSON
import XCTest

@testable import MoEData

final class ParquetTests: XCTestCase {
    func testEveryFixtureReadsAsPyarrowReadsIt() throws {
        let cases = try DataFixtures.cases(extension: "parquet")
        XCTAssertGreaterThanOrEqual(cases.count, 13)
        for (file, expected) in cases {
            do {
                let table = try Parquet.read(DataFixtures.url(file))
                DataFixtures.assertEqual(table, expected, file)
            } catch {
                XCTFail("\(file): \(error)")
            }
        }
    }

    func testNestedColumnsHaveTheShapesBenchmarksUse() throws {
        let table = try Parquet.read(DataFixtures.url("nested_v1_snappy.parquet"))
        XCTAssertEqual(table.columns, ["endings", "choices", "records", "grid", "meta", "answer"])
        // Some row must have each shape, or the fixture does not test what it claims.
        XCTAssertTrue(table.rows.contains { $0["endings"] == .array([]) })
        XCTAssertTrue(table.rows.contains { $0["endings"] == .null })
        XCTAssertTrue(table.rows.contains { $0["endings"]?.arrayValue?.contains(.null) ?? false })
        XCTAssertTrue(table.rows.contains { $0["choices"]?["text"]?.arrayValue?.count ?? 0 >= 2 })
        XCTAssertTrue(table.rows.contains { $0["records"]?.arrayValue?.contains { $0["tags"]?.arrayValue?.count ?? 0 >= 2 } ?? false })
    }

    func testColumnSelection() throws {
        let table = try Parquet.read(DataFixtures.url("mmlu_like.parquet"), columns: ["answer", "choices"])
        XCTAssertEqual(table.columns, ["choices", "answer"])
        let full = try DataFixtures.expectedTable("mmlu_like")
        XCTAssertEqual(table.rows.count, full.rows.count)
        for (got, want) in zip(table.rows, full.rows) {
            XCTAssertEqual(got, JSONObject([("choices", want["choices"] ?? .null), ("answer", want["answer"] ?? .null)]))
        }
        let message = DataFixtures.assertDataFileError("x.parquet") {
            try Parquet.read(bytes: try DataFixtures.bytes("mmlu_like.parquet"), name: "x.parquet", columns: ["nope"])
        }
        XCTAssertTrue(message?.contains("no column nope") ?? false, message ?? "")
    }

    func testUnsupportedEncodingAndCodecAreNamed() throws {
        let delta = DataFixtures.assertDataFileError("delta.parquet") {
            try Parquet.read(bytes: try DataFixtures.bytes("delta_encoding.parquet"), name: "delta.parquet")
        }
        XCTAssertTrue(delta?.contains("DELTA_BINARY_PACKED") ?? false, delta ?? "")
        XCTAssertTrue(delta?.contains("column n") ?? false, delta ?? "")
        let lz4 = DataFixtures.assertDataFileError("lz4.parquet") {
            try Parquet.read(bytes: try DataFixtures.bytes("lz4_codec.parquet"), name: "lz4.parquet")
        }
        XCTAssertTrue(lz4?.contains("LZ4") ?? false, lz4 ?? "")
        XCTAssertTrue(lz4?.contains("row group 0") ?? false, lz4 ?? "")
    }

    func testMissingFileIsNamed() {
        DataFixtures.assertDataFileError("/nonexistent/x.parquet") { try Parquet.read(URL(fileURLWithPath: "/nonexistent/x.parquet")) }
    }

    func testHybridDecoderRunsAndPackedGroups() throws {
        // RLE run of 5 × value 3 (width 2), then one bit-packed group of 8 values 0…3,0…3.
        let bytes: [UInt8] = [5 << 1, 3, (1 << 1) | 1, 0b1110_0100, 0b1110_0100]
        let values = try ParquetEncoding.hybrid(bytes, start: 0, end: bytes.count, bitWidth: 2, count: 13)
        XCTAssertEqual(values, [3, 3, 3, 3, 3, 0, 1, 2, 3, 0, 1, 2, 3])
        XCTAssertThrowsError(try ParquetEncoding.hybrid(bytes, start: 0, end: bytes.count, bitWidth: 2, count: 14))
        XCTAssertThrowsError(try ParquetEncoding.hybrid(bytes, start: 0, end: bytes.count, bitWidth: 33, count: 1))
    }
}
