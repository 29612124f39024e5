/// Element types a checkpoint may store. Compute is always fp32; bf16 and fp16 are storage formats
/// (bf16 kept as its UInt16 bit pattern, since Swift has no BFloat16).
public enum DType: String, Sendable, CaseIterable, Codable {
    case float32, float64, bfloat16, float16
    case int64, int32, int16, int8, uint8, bool

    /// Bytes per element.
    public var byteSize: Int {
        switch self {
        case .float64, .int64: return 8
        case .float32, .int32: return 4
        case .bfloat16, .float16, .int16: return 2
        case .int8, .uint8, .bool: return 1
        }
    }

    public var isFloatingPoint: Bool {
        switch self {
        case .float32, .float64, .bfloat16, .float16: return true
        default: return false
        }
    }

    /// The name torch prints (`torch.bfloat16` → "bfloat16"), used in messages and JSON.
    public var torchName: String { rawValue }
}
