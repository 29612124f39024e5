// swift-tools-version: 6.1
// libFuzzer targets for every parser of moe-eval (issue 16). Built only by tools/fuzz/run.sh, with
// `-sanitize=fuzzer,address`; the main package's build and `swift test` never see this package.
import PackageDescription

let parserLibraries: [Target.Dependency] = [
    .product(name: "MoECheckpoint", package: "moe-eval"),
    .product(name: "MoEModels", package: "moe-eval"),
    .product(name: "MoETokenizer", package: "moe-eval"),
    .product(name: "MoEEval", package: "moe-eval"),
    .product(name: "MoEJSON", package: "moe-eval"),
    .product(name: "MoEData", package: "moe-eval"),
    .product(name: "MoECUDA", package: "moe-eval"),
]

/// One executable per parser; each is a libFuzzer binary (see FuzzSupport).
let fuzzTargets = [
    "FuzzPickle", "FuzzTorchZip", "FuzzDCPMetadata", "FuzzSafetensors", "FuzzJSON", "FuzzTrainConfig",
    "FuzzModelArgs", "FuzzTokenizerJSON", "FuzzTokenizerEncode", "FuzzTaskData", "FuzzParquet", "FuzzArrowStream",
    "FuzzKernelCacheEntry",
]

let package = Package(
    name: "moe-eval-fuzz",
    platforms: [.macOS(.v14)],
    dependencies: [.package(name: "moe-eval", path: "../..")],
    targets: [
        // Declares libFuzzer's `LLVMFuzzerRunDriver`, which Swift cannot see otherwise.
        .target(name: "CFuzzDriver"),
        .target(name: "FuzzSupport", dependencies: ["CFuzzDriver"]),
    ]
        + fuzzTargets.map { name in
            .executableTarget(name: name, dependencies: ["FuzzSupport"] + parserLibraries)
        },
    swiftLanguageModes: [.v6]
)
