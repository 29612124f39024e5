import Foundation
import MoEData
import MoEJSON
import XCTest

final class ArrowStreamTests: XCTestCase {
    func testEveryFixtureReadsAsPyarrowReadsIt() throws {
        let cases = try DataFixtures.cases(extension: "arrow")
        XCTAssertGreaterThanOrEqual(cases.count, 6)
        for (file, expected) in cases {
            do {
                DataFixtures.assertEqual(try ArrowStream.read(DataFixtures.url(file)), expected, file)
            } catch {
                XCTFail("\(file): \(error)")
            }
        }
    }

    func testDatasetsCacheFileThroughDataFile() throws {
        let table = try DataFile.read(DataFixtures.url("datasets_arc.arrow"))
        XCTAssertEqual(table.columns, ["id", "question", "choices", "answerKey"])
        XCTAssertEqual(table.rows.first?["choices"]?["label"], .array([.string("A"), .string("B"), .string("C"), .string("D")]))
    }

    func testLZ4IsAClearError() throws {
        let message = DataFixtures.assertDataFileError("lz4.arrow") {
            try ArrowStream.read(bytes: try DataFixtures.bytes("stream_lz4.arrow"), name: "lz4.arrow")
        }
        XCTAssertTrue(message?.contains("LZ4") ?? false, message ?? "")
    }

    func testNotAnArrowFile() throws {
        DataFixtures.assertDataFileError("x.arrow") { try ArrowStream.read(bytes: [], name: "x.arrow") }
        DataFixtures.assertDataFileError("x.arrow") { try ArrowStream.read(bytes: Array("hello, world\n".utf8), name: "x.arrow") }
        DataFixtures.assertDataFileError("x.arrow") {
            try ArrowStream.read(bytes: try DataFixtures.bytes("flat_none_v1.parquet"), name: "x.arrow")
        }
    }
}
