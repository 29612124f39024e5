// swift-tools-version: 6.1
import PackageDescription

#if os(macOS)
let blasLinker: [LinkerSetting] = [.linkedFramework("Accelerate")]
#else
let blasLinker: [LinkerSetting] = []
#endif

let package = Package(
    name: "moe-eval",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "moe-eval", targets: ["moe-eval"]),
        .library(name: "MoETensor", targets: ["MoETensor"]),
        .library(name: "MoECheckpoint", targets: ["MoECheckpoint"]),
        .library(name: "MoEModels", targets: ["MoEModels"]),
        .library(name: "MoETokenizer", targets: ["MoETokenizer"]),
        .library(name: "MoEEval", targets: ["MoEEval"]),
        .library(name: "MoEData", targets: ["MoEData"]),
        .library(name: "MoEJSON", targets: ["MoEJSON"]),
        .library(name: "MoECUDA", targets: ["MoECUDA"]),
    ],
    // `swift build --traits MPI`: expert parallelism across processes with Open MPI (docs/DISTRIBUTED.md).
    traits: [.trait(name: "MPI", description: "Expert parallelism across processes and hosts with MPI (needs libopenmpi-dev)")],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/LebJe/TOMLKit", exact: "0.6.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", exact: "2.28.1"),
    ],
    targets: [
        // BLAS: OpenBLAS through pkg-config on Linux; Accelerate on macOS (see the module map).
        .systemLibrary(
            name: "CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"]), .brew(["openblas"])]
        ),
        // oneDNN (Linux only; macOS keeps Accelerate): fp32 and bf16 matmul with kernels chosen at run time
        // (AVX-512, AVX512_BF16, AMX). Debian ships no pkg-config file for it; the module map links it.
        .systemLibrary(name: "CDNNL", providers: [.apt(["libdnnl-dev"])]),
        // Hand-written C kernels with runtime CPU dispatch (bf16 conversion, dot products). No unsafeFlags: they would
        // make the library products unusable from other packages; release's -O2 measured the same as -O3 (docs/PERFORMANCE.md).
        .target(name: "CKernels"),
        // Temporary paths removed by a SIGINT/SIGTERM handler (async-signal-safe, hence C), no-replace rename.
        .target(name: "CTempFiles"),
        // Small utilities every layer shares: the one atomic, no-replace file writer, the one SHA-256.
        .target(name: "MoECore", dependencies: ["CTempFiles", "CCrypto"]),
        .target(
            name: "MoETensor",
            dependencies: ["CBLAS", "CKernels", "MoECore", .target(name: "CDNNL", condition: .when(platforms: [.linux]))],
            linkerSettings: blasLinker
        ),
        .target(
            name: "MoECheckpoint",
            dependencies: ["MoETensor", "MoEJSON", "MoECore", "CZlib"]
        ),
        .target(
            name: "MoEModels",
            dependencies: ["MoETensor", "MoECheckpoint", "MoEJSON", .product(name: "TOMLKit", package: "TOMLKit")]
        ),
        // The one JSON reader/writer (tokenizer files, request bodies, results files with Python's NaN).
        .target(name: "MoEJSON"),
        .target(name: "MoETokenizer", dependencies: ["MoEJSON"]),
        // Decompressors for parquet pages and Arrow IPC buffers (MoEData only).
        .systemLibrary(name: "CSnappy", pkgConfig: "snappy", providers: [.apt(["libsnappy-dev"]), .brew(["snappy"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"]), .brew(["zstd"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        // OpenSSL's libcrypto: SHA-256 of downloaded Hub blobs.
        .systemLibrary(name: "CCrypto", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"]), .brew(["openssl"])]),
        // Dataset files as benchmark tasks get them: parquet, Arrow IPC streams, JSON Lines.
        .target(name: "MoEData", dependencies: ["MoEJSON", "MoECore", "CSnappy", "CZstd", "CZlib"]),
        // NVIDIA GPUs through run-time loading of the driver, cuBLAS and NVRTC: no CUDA at build time (issue 17).
        .target(name: "CCUDA", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        .target(name: "MoECUDA", dependencies: ["CCUDA", "MoEModels", "MoETensor", "MoECore"]),
        .target(
            name: "MoEEval",
            dependencies: ["MoETensor", "MoECheckpoint", "MoEModels", "MoETokenizer", "MoEJSON", "MoEData", "MoECore", "MoEDistributed"]
        ),
        .target(
            name: "MoEServer",
            dependencies: ["MoEEval", "MoEModels", "MoETokenizer", "MoEJSON", .product(name: "Hummingbird", package: "hummingbird")]
        ),
        // Open MPI's C API; `MPI_COMM_WORLD` and the datatype handles are macros, exposed by the shim.
        .systemLibrary(
            name: "CMPI",
            pkgConfig: "ompi-c",
            providers: [.apt(["libopenmpi-dev"]), .brew(["open-mpi"])]
        ),
        .target(
            name: "MoEDistributed",
            dependencies: ["MoEModels", .target(name: "CMPI", condition: .when(traits: ["MPI"]))]
        ),
        .executableTarget(
            name: "moe-eval",
            dependencies: [
                "MoETensor", "MoECheckpoint", "MoEModels", "MoETokenizer", "MoEEval", "MoEServer", "MoEDistributed", "MoEJSON", "MoEData",
                "MoECore", "CBLAS", "MoECUDA",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "MoETensorTests", dependencies: ["MoETensor"]),
        .testTarget(name: "MoEJSONTests", dependencies: ["MoEJSON"]),
        .testTarget(name: "MoECoreTests", dependencies: ["MoECore"]),
        // A Hugging Face Hub stand-in on 127.0.0.1 for the download tests.
        .target(name: "HubTestSupport", path: "Tests/HubTestSupport"),
        .testTarget(name: "MoEDataTests", dependencies: ["MoEData", "MoEJSON", "HubTestSupport"], exclude: ["Fixtures"]),
        .testTarget(name: "MoECheckpointTests", dependencies: ["MoECheckpoint", "MoEModels"], exclude: ["Fixtures"]),
        .testTarget(name: "MoEModelsTests", dependencies: ["MoEModels", "MoEJSON"], exclude: ["Fixtures"]),
        .testTarget(name: "MoETokenizerTests", dependencies: ["MoETokenizer", "MoEJSON"], exclude: ["Fixtures"]),
        .testTarget(name: "MoEEvalTests", dependencies: ["MoEEval", "MoEModels", "MoETokenizer", "MoECore"], exclude: ["Fixtures"]),
        .testTarget(name: "CLITests", dependencies: ["moe-eval", "MoECheckpoint", "MoEModels", "MoEEval", "HubTestSupport"]),
        .testTarget(
            name: "MoEServerTests",
            dependencies: [
                "MoEServer", "MoEModels", "MoETokenizer", "MoEJSON",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        .testTarget(name: "MoECUDATests", dependencies: ["MoECUDA", "MoEModels"]),
    ],
    swiftLanguageModes: [.v6]
)
