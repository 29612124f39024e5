import Foundation

/// CPython's `random.Random` (Modules/_randommodule.c and Lib/random.py of 3.11), bit for bit, for the
/// parts lm-eval uses: integer seeding, `getrandbits`, `random`, `sample`, `shuffle` and `choices`.
/// lm-eval draws few-shot examples with `Random(1234).sample(...)` and bootstraps stderrs with
/// `Random(i).choices(...)`; any other generator would pick other examples and other numbers.
struct PythonRandom {
    private static let n = 624, m = 397
    private var state = [UInt32](repeating: 0, count: 624)
    private var index = 624

    /// `random.Random(seed)` for an integer seed: MT19937 `init_by_array` over the 32-bit words of |seed|.
    init(seed: Int) {
        var key: [UInt32] = []
        var magnitude = seed.magnitude
        while magnitude > 0 {
            key.append(UInt32(truncatingIfNeeded: magnitude))
            magnitude >>= 32
        }
        if key.isEmpty { key = [0] }
        initByArray(key)
    }

    private mutating func initGenrand(_ s: UInt32) {
        state[0] = s
        for i in 1..<Self.n {
            let prev = state[i - 1]
            state[i] = 1_812_433_253 &* (prev ^ (prev >> 30)) &+ UInt32(i)
        }
        index = Self.n
    }

    private mutating func initByArray(_ key: [UInt32]) {
        initGenrand(19_650_218)
        var i = 1, j = 0
        for _ in 0..<max(Self.n, key.count) {
            let prev = state[i - 1]
            state[i] = (state[i] ^ ((prev ^ (prev >> 30)) &* 1_664_525)) &+ key[j] &+ UInt32(j)
            i += 1; j += 1
            if i >= Self.n { state[0] = state[Self.n - 1]; i = 1 }
            if j >= key.count { j = 0 }
        }
        for _ in 0..<(Self.n - 1) {
            let prev = state[i - 1]
            state[i] = (state[i] ^ ((prev ^ (prev >> 30)) &* 1_566_083_941)) &- UInt32(i)
            i += 1
            if i >= Self.n { state[0] = state[Self.n - 1]; i = 1 }
        }
        state[0] = 0x8000_0000
    }

    private mutating func twist() {
        let n = Self.n, m = Self.m
        func mixed(_ a: UInt32, _ b: UInt32) -> UInt32 {
            let y = (a & 0x8000_0000) | (b & 0x7FFF_FFFF)
            return (y >> 1) ^ ((y & 1) == 0 ? 0 : 0x9908_B0DF)
        }
        for k in 0..<(n - m) { state[k] = state[k + m] ^ mixed(state[k], state[k + 1]) }
        for k in (n - m)..<(n - 1) { state[k] = state[k + m - n] ^ mixed(state[k], state[k + 1]) }
        state[n - 1] = state[m - 1] ^ mixed(state[n - 1], state[0])
        index = 0
    }

    mutating func nextUInt32() -> UInt32 {
        if index >= Self.n { twist() }
        var y = state[index]
        index += 1
        y ^= y >> 11
        y ^= (y << 7) & 0x9D2C_5680
        y ^= (y << 15) & 0xEFC6_0000
        y ^= y >> 18
        return y
    }

    /// `getrandbits(k)` for 0 ≤ k ≤ 64: 32-bit words, least significant first, the last one shifted down.
    mutating func getrandbits(_ k: Int) -> UInt64 {
        precondition((0...64).contains(k), "getrandbits supports 0...64 bits")
        if k == 0 { return 0 }
        if k <= 32 { return UInt64(nextUInt32() >> (32 - k)) }
        let low = UInt64(nextUInt32())
        let high = UInt64(nextUInt32() >> (64 - k))
        return low | (high << 32)
    }

    /// `random()`: 53 random bits as a double in [0, 1).
    mutating func random() -> Double {
        let a = Double(nextUInt32() >> 5), b = Double(nextUInt32() >> 6)
        return (a * 67_108_864.0 + b) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// `_randbelow_with_getrandbits(n)` for n > 0: rejection sampling on `n.bit_length()` bits.
    mutating func randbelow(_ n: Int) -> Int {
        let bits = Int.bitWidth - n.leadingZeroBitCount
        var r = getrandbits(bits)
        while r >= UInt64(n) { r = getrandbits(bits) }
        return Int(r)
    }

    /// `sample(range(n), k)`: the positions `random.sample` picks from a sequence of length n, in draw order.
    /// Small populations are drawn from a shrinking pool, larger ones by rejection against a set of picks.
    mutating func sample(populationSize n: Int, count k: Int) -> [Int] {
        precondition(k >= 0 && k <= n, "sample larger than population or negative")
        var setSize = 21
        if k > 5 { setSize += Int(pow(4.0, ceil(log(Double(k * 3)) / log(4.0)))) }
        var result: [Int] = []
        result.reserveCapacity(k)
        if n <= setSize {
            var pool = Array(0..<n)
            for i in 0..<k {
                let j = randbelow(n - i)
                result.append(pool[j])
                pool[j] = pool[n - i - 1]
            }
        } else {
            var selected = Set<Int>()
            for _ in 0..<k {
                var j = randbelow(n)
                while selected.contains(j) { j = randbelow(n) }
                selected.insert(j)
                result.append(j)
            }
        }
        return result
    }

    /// `shuffle(x)` (Fisher–Yates from the end).
    mutating func shuffle<T>(_ x: inout [T]) {
        guard x.count > 1 else { return }
        for i in stride(from: x.count - 1, through: 1, by: -1) {
            x.swapAt(i, randbelow(i + 1))
        }
    }

    /// The index `choices(population)` picks next: `floor(random() * n)`.
    mutating func choiceIndex(_ n: Int) -> Int { Int((random() * Double(n)).rounded(.down)) }
}
