import Testing
@Test func placeholder_MoEModelsTests() { #expect(Bool(true)) }
