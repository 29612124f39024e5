import Foundation
import MoEData
import XCTest

final class DataFileTests: XCTestCase {
    func testUnknownExtensionIsNamed() {
        XCTAssertThrowsError(try DataFile.read(URL(fileURLWithPath: "/nonexistent/file.xyz"))) { error in
            XCTAssertTrue("\(error)".contains("/nonexistent/file.xyz"), "\(error)")
        }
    }
}
