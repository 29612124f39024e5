import CCUDA

/// A CUDA driver, cuBLAS or NVRTC call failed, or a request was refused before reaching one. One line: the call and
/// CUDA's own words for the error.
public struct CUDAError: Error, Sendable, CustomStringConvertible {
    /// The exported function (e.g. `cuMemAlloc_v2`) or, for a refused request, the operation.
    public let call: String
    public let reason: String

    public init(call: String, reason: String) {
        self.call = call
        self.reason = reason
    }

    public var description: String { "\(call) failed: \(reason)" }
}

extension CUDADriverLibrary {
    /// Throws unless `result` is CUDA_SUCCESS, naming the call with the driver's error name and text.
    func check(_ result: CUresult, _ call: String) throws(CUDAError) {
        guard result != MOE_CUDA_SUCCESS else { return }
        throw CUDAError(call: call, reason: describe(result))
    }

    /// "CUDA_ERROR_OUT_OF_MEMORY (2): out of memory".
    func describe(_ result: CUresult) -> String {
        var name: UnsafePointer<CChar>? = nil
        var text: UnsafePointer<CChar>? = nil
        _ = api.cuGetErrorName!(result, &name)
        _ = api.cuGetErrorString!(result, &text)
        let shownName = name.map { String(cString: $0) } ?? "CUDA error"
        let shownText = text.map { String(cString: $0) } ?? "unknown error"
        return "\(shownName) (\(result)): \(shownText)"
    }
}
