import Testing
@Test func placeholder_MoECheckpointTests() { #expect(Bool(true)) }
