import Testing
@Test func placeholder_MoETensorTests() { #expect(Bool(true)) }
