import Foundation
import Hummingbird
import HummingbirdTesting
import Testing

@testable import MoEServer

/// Oversized bodies are refused without being buffered whole, and the connection is closed rather
/// than drained (issue 16, class 9). A declared Content-Length (this test client always sends the
/// true one), malformed chunked bodies and stalled clients need a real socket: Tests/CLITests/ServerSoakTests.swift.
@Suite struct BodyLimitTests {
    @Test func bodyFoundOversizedGets413AndClosesTheConnection() async throws {
        let limit = ServerFixture.limits.maxBodyBytes
        let body = "{\"prompt\":\"" + String(repeating: "a", count: limit) + "\"}"
        try await ServerFixture.withClient { client in
            try await client.execute(
                uri: "/tokenize", method: .post, headers: [.contentType: "application/json"],
                body: ByteBuffer(string: body)
            ) { response in
                #expect(response.status == .contentTooLarge)
                #expect(response.headers[.connection] == "close")
            }
            // Answers that keep the connection open say nothing about closing it.
            try await client.execute(uri: "/health", method: .get) { response in
                #expect(response.status == .ok)
                #expect(response.headers[.connection] == nil)
            }
        }
    }
}
