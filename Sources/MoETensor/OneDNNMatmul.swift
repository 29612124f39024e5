#if canImport(CDNNL)
import CDNNL
import CKernels

#if canImport(Glibc)
import Glibc
#endif

/// Row-major `y[M, N] = x[M, K] · Wᵀ` (+ `y`) through oneDNN's matmul primitive: fp32 × fp32, or bf16 × bf16 with
/// fp32 accumulation. `W` `[N, K]` is described to oneDNN as `K×N` with strides `(1, K)`, so the checkpoint's
/// layout is used in place. Primitives are created once per shape and thread count and cached; each execution
/// passes its own scratchpad (per calling thread), so cached primitives may run on several threads at once.
enum OneDNNMatmul {
    enum Operands: Hashable { case fp32, bf16 }

    /// Debian's oneDNN runs on OpenMP, whose thread count is a per-calling-thread setting: every call sets it to the
    /// worker count `Compute` would use, so `--threads 2` means two threads and a call from inside one of our
    /// parallel loops runs on its own thread only.
    struct Key: Hashable {
        var operands: Operands
        var m, n, k, lda, ldw, ldy: Int
        var accumulate: Bool
        var threads: Int
        /// Weights in 64-row panels (`Weight.Layout.panels64`, oneDNN's BA16a64b) instead of row-major.
        var panels64 = false
    }

    final class Primitive: @unchecked Sendable {
        let primitive: dnnl_primitive_t
        let scratchpad: dnnl_memory_desc_t
        let scratchpadBytes: Int
        let source, weights, destination: dnnl_memory_desc_t
        init(
            primitive: dnnl_primitive_t, scratchpad: dnnl_memory_desc_t, scratchpadBytes: Int,
            source: dnnl_memory_desc_t, weights: dnnl_memory_desc_t, destination: dnnl_memory_desc_t
        ) {
            self.primitive = primitive
            self.scratchpad = scratchpad
            self.scratchpadBytes = scratchpadBytes
            self.source = source
            self.weights = weights
            self.destination = destination
        }
        deinit { dnnl_primitive_destroy(primitive) }
    }

    /// Shapes seen by one run are few (one per layer kind and prefill length, plus expert bucket sizes); the bound
    /// only stops an unusual workload from growing the cache without end.
    static let maxCachedPrimitives = 4096

    final class State: @unchecked Sendable {
        let engine: dnnl_engine_t?
        var cache: [Key: Primitive] = [:]
        var panelPreference: [PanelShape: Bool] = [:]
        var lock = pthread_mutex_t()
        init() {
            pthread_mutex_init(&lock, nil)
            var engine: dnnl_engine_t?
            engine = dnnl_engine_create(&engine, dnnl_cpu, 0) == dnnl_success ? engine : nil
            self.engine = engine
        }
    }
    static let state = State()

    /// Whether oneDNN loaded and made a CPU engine.
    static var isAvailable: Bool { state.engine != nil }

    /// Runs the product; false (nothing written) when oneDNN cannot make a primitive for it, so the caller takes
    /// another path.
    static func multiply(
        _ operands: Operands, x: UnsafeRawPointer, m: Int, lda: Int, weight: UnsafeRawPointer, n: Int, k: Int,
        into y: UnsafeMutablePointer<Float>, ldy: Int, accumulate: Bool, threads: Int
    ) -> Bool {
        let key = Key(operands: operands, m: m, n: n, k: k, lda: lda, ldw: k, ldy: ldy, accumulate: accumulate, threads: threads)
        guard let primitive = prepare(key) else { return false }
        let status = execute(primitive, threads: threads, x: x, weight: weight, into: y)
        // Only an allocation inside oneDNN fails once the primitive exists, and `y` may then be half written,
        // so no other path can take over.
        if status != dnnl_success { fatalError("oneDNN could not run a prepared \(m)×\(n)×\(k) matmul (status \(status.rawValue))") }
        return true
    }

    /// The cached primitive for `key`, created on first use; nil when oneDNN cannot make one.
    static func prepare(_ key: Key) -> Primitive? {
        guard let engine = state.engine else { return nil }
        omp_set_num_threads(Int32(key.threads))
        return cachedPrimitive(key, engine: engine)
    }

    /// Runs a prepared primitive on the calling thread with `threads` OpenMP threads (the count it was made for).
    /// Only allocation failures make it fail once `prepare` succeeded.
    static func execute(
        _ primitive: Primitive, threads: Int, x: UnsafeRawPointer, weight: UnsafeRawPointer, into y: UnsafeMutablePointer<Float>
    ) -> dnnl_status_t {
        guard let engine = state.engine else { return dnnl_runtime_error }
        omp_set_num_threads(Int32(threads))
        var scratchBuffer: UnsafeMutableRawPointer? = nil
        if primitive.scratchpadBytes > 0 {
            guard let scratch = moe_thread_scratch(5, (primitive.scratchpadBytes + 3) / 4) else { return dnnl_out_of_memory }
            scratchBuffer = UnsafeMutableRawPointer(scratch)
        }
        var stream: dnnl_stream_t?
        var status = dnnl_stream_create(&stream, engine, UInt32(dnnl_stream_default_flags.rawValue))
        guard status == dnnl_success else { return status }
        defer { dnnl_stream_destroy(stream) }
        var memories: [dnnl_memory_t?] = []
        defer { for memory in memories { dnnl_memory_destroy(memory) } }
        // Workers with equal column shares run one primitive at the same time: its descriptors are only read, copied.
        func memory(_ desc: dnnl_memory_desc_t, _ pointer: UnsafeMutableRawPointer?) -> dnnl_memory_t? {
            var memory: dnnl_memory_t?
            var desc = desc
            status = dnnl_memory_create(&memory, &desc, engine, pointer)
            guard status == dnnl_success else { return nil }
            memories.append(memory)
            return memory
        }
        guard let source = memory(primitive.source, UnsafeMutableRawPointer(mutating: x)),
            let weights = memory(primitive.weights, UnsafeMutableRawPointer(mutating: weight)),
            let destination = memory(primitive.destination, UnsafeMutableRawPointer(y))
        else { return status }
        var arguments = [
            dnnl_exec_arg_t(arg: DNNL_ARG_SRC, memory: source),
            dnnl_exec_arg_t(arg: DNNL_ARG_WEIGHTS, memory: weights),
            dnnl_exec_arg_t(arg: DNNL_ARG_DST, memory: destination),
        ]
        if let scratchBuffer {
            guard let scratch = memory(primitive.scratchpad, scratchBuffer) else { return status }
            arguments.append(dnnl_exec_arg_t(arg: DNNL_ARG_SCRATCHPAD, memory: scratch))
        }
        status = dnnl_primitive_execute(primitive.primitive, stream, Int32(arguments.count), arguments)
        guard status == dnnl_success else { return status }
        return dnnl_stream_wait(stream)
    }

    static func cachedPrimitive(_ key: Key, engine: dnnl_engine_t) -> Primitive? {
        pthread_mutex_lock(&state.lock)
        defer { pthread_mutex_unlock(&state.lock) }
        if let found = state.cache[key] { return found }
        guard let made = makePrimitive(key, engine: engine) else { return nil }
        if state.cache.count >= maxCachedPrimitives { state.cache.removeAll() }
        state.cache[key] = made
        return made
    }

    /// oneDNN's name of the layout `Weight.packedInPanels64` produces.
    static func panelTag(_ operands: Operands) -> dnnl_format_tag_t {
        operands == .bf16 ? dnnl_BA16a64b2a : dnnl_BA16a64b
    }

    /// Whether oneDNN's matmul, free to choose, packs the `[n, k]` weights of a 64-row product into the layout
    /// `Weight.packedInPanels64` produces (BA16a64b for fp32, BA16a64b2a for bf16). Cached per shape.
    static func prefersPanels64(_ operands: Operands, n: Int, k: Int) -> Bool {
        guard let engine = state.engine, n > 0, k > 0 else { return false }
        let shape = PanelShape(operands: operands, n: n, k: k)
        let type = operands == .bf16 ? dnnl_bf16 : dnnl_f32
        pthread_mutex_lock(&state.lock)
        defer { pthread_mutex_unlock(&state.lock) }
        if let known = state.panelPreference[shape] { return known }
        var source = dnnl_memory_desc_t(), anyWeights = dnnl_memory_desc_t(), destination = dnnl_memory_desc_t()
        var panels = dnnl_memory_desc_t()
        var prefers = false
        if dnnl_memory_desc_init_by_strides(&source, 2, [64, Int64(k)], type, [Int64(k), 1]) == dnnl_success,
            dnnl_memory_desc_init_by_tag(&anyWeights, 2, [Int64(k), Int64(n)], type, dnnl_format_tag_any) == dnnl_success,
            dnnl_memory_desc_init_by_strides(&destination, 2, [64, Int64(n)], dnnl_f32, [Int64(n), 1]) == dnnl_success,
            dnnl_memory_desc_init_by_tag(&panels, 2, [Int64(k), Int64(n)], type, panelTag(operands)) == dnnl_success
        {
            var description = dnnl_matmul_desc_t()
            var descriptor: dnnl_primitive_desc_t?
            if dnnl_matmul_desc_init(&description, &source, &anyWeights, nil, &destination) == dnnl_success,
                dnnl_primitive_desc_create(&descriptor, &description, nil, engine, nil) == dnnl_success
            {
                if let chosen = dnnl_primitive_desc_query_md(descriptor, dnnl_query_weights_md, 0) {
                    prefers = dnnl_memory_desc_equal(chosen, &panels) != 0
                }
                dnnl_primitive_desc_destroy(descriptor)
            }
        }
        state.panelPreference[shape] = prefers
        return prefers
    }

    struct PanelShape: Hashable {
        var operands: Operands
        var n, k: Int
    }

    static func makePrimitive(_ key: Key, engine: dnnl_engine_t) -> Primitive? {
        let inputType = key.operands == .bf16 ? dnnl_bf16 : dnnl_f32
        var source = dnnl_memory_desc_t(), weights = dnnl_memory_desc_t(), destination = dnnl_memory_desc_t()
        guard
            dnnl_memory_desc_init_by_strides(&source, 2, [Int64(key.m), Int64(key.k)], inputType, [Int64(key.lda), 1]) == dnnl_success,
            key.panels64
                ? dnnl_memory_desc_init_by_tag(&weights, 2, [Int64(key.k), Int64(key.n)], inputType, panelTag(key.operands))
                    == dnnl_success
                : dnnl_memory_desc_init_by_strides(&weights, 2, [Int64(key.k), Int64(key.n)], inputType, [1, Int64(key.ldw)]) == dnnl_success,
            dnnl_memory_desc_init_by_strides(&destination, 2, [Int64(key.m), Int64(key.n)], dnnl_f32, [Int64(key.ldy), 1]) == dnnl_success
        else { return nil }
        var description = dnnl_matmul_desc_t()
        guard dnnl_matmul_desc_init(&description, &source, &weights, nil, &destination) == dnnl_success else { return nil }
        var attributes: dnnl_primitive_attr_t?
        guard dnnl_primitive_attr_create(&attributes) == dnnl_success else { return nil }
        defer { dnnl_primitive_attr_destroy(attributes) }
        guard dnnl_primitive_attr_set_scratchpad_mode(attributes, dnnl_scratchpad_mode_user) == dnnl_success else { return nil }
        if key.accumulate {
            var postOps: dnnl_post_ops_t?
            guard dnnl_post_ops_create(&postOps) == dnnl_success else { return nil }
            defer { dnnl_post_ops_destroy(postOps) }
            guard dnnl_post_ops_append_sum(postOps, 1) == dnnl_success,
                dnnl_primitive_attr_set_post_ops(attributes, postOps) == dnnl_success
            else { return nil }
        }
        var descriptor: dnnl_primitive_desc_t?
        guard dnnl_primitive_desc_create(&descriptor, &description, attributes, engine, nil) == dnnl_success else { return nil }
        defer { dnnl_primitive_desc_destroy(descriptor) }
        guard let scratchpadPointer = dnnl_primitive_desc_query_md(descriptor, dnnl_query_scratchpad_md, 0) else { return nil }
        let scratchpad = scratchpadPointer.pointee
        var scratchpadCopy = scratchpad
        let scratchpadBytes = dnnl_memory_desc_get_size(&scratchpadCopy)
        // Packed weights are only worth it on oneDNN's optimised kernels; its reference kernel (which it picks for
        // a layout or destination its kernels do not take) is about 100× slower than the row-major path.
        if key.panels64 {
            var implementation: UnsafePointer<CChar>?
            guard dnnl_primitive_desc_query(descriptor, dnnl_query_impl_info_str, 0, &implementation) == dnnl_success,
                let implementation, !String(cString: implementation).hasPrefix("ref")
            else { return nil }
        }
        var primitive: dnnl_primitive_t?
        guard dnnl_primitive_create(&primitive, descriptor) == dnnl_success, let primitive else { return nil }
        return Primitive(
            primitive: primitive, scratchpad: scratchpad, scratchpadBytes: scratchpadBytes,
            source: source, weights: weights, destination: destination)
    }
}
#endif
