import Testing
@Test func placeholder_MoETokenizerTests() { #expect(Bool(true)) }
