// swift-tools-version:6.0
// parry: tensors, autograd and adversarial robustness for Lua 5.4 scripts.
// No Swift package dependencies; system libraries come from Debian (scripts/deps).
import PackageDescription

let optimize: [SwiftSetting] = []  // release builds use -O; checks stay on

let package = Package(
    name: "parry",
    products: [
        .executable(name: "parry", targets: ["parry"]),
        // parry as a Lua 5.4 C module (installed as parry/core.so by make install).
        .library(name: "parry_core", type: .dynamic, targets: ["ParryLua"]),
        // Replays fuzz corpora; built with -DPARRY_FUZZ and -sanitize=fuzzer it is the fuzzer (make fuzz).
        .executable(name: "parry-fuzz", targets: ["ParryFuzz"]),
    ],
    targets: [
        // System libraries.
        .systemLibrary(name: "CLua", pkgConfig: "lua5.4",
                       providers: [.apt(["liblua5.4-dev"])]),
        .systemLibrary(name: "CBLAS", providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CEdit", pkgConfig: "libedit", providers: [.apt(["libedit-dev"])]),
        .systemLibrary(name: "CMuJoCo", providers: [.apt(["libmujoco-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
        // The C side of the Lua edge: macro wrappers and the error trampoline.
        .target(name: "CLuaShim", dependencies: ["CLua"]),

        // parry's own SIMD kernels in C (AVX-512 intrinsics, chosen at run time): the
        // direct convolution. Optimized in debug builds too, so tests run them at speed.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"])]),

        .target(name: "ParryCore", dependencies: ["CBLAS"], swiftSettings: optimize),
        .target(name: "ParryDist", dependencies: ["ParryCore", "CMPI"], swiftSettings: optimize),
        .target(name: "ParryNN", dependencies: ["ParryCore", "CBLAS", "CKernels"], swiftSettings: optimize),
        .target(name: "ParryData", dependencies: ["ParryCore", "CZlib"], swiftSettings: optimize),
        .target(name: "ParryRobust", dependencies: ["ParryCore", "ParryNN", "ParryData"], swiftSettings: optimize),
        .target(name: "ParryFed", dependencies: ["ParryCore", "ParryNN", "ParryDist", "CBLAS"], swiftSettings: optimize),
        .target(name: "ParryRL", dependencies: ["ParryCore", "ParryNN", "CMuJoCo"], swiftSettings: optimize),
        .target(name: "ParryLua", dependencies: ["ParryCore", "ParryNN", "ParryData", "ParryRobust", "ParryFed", "ParryRL", "ParryDist", "CLua", "CLuaShim", "CEdit"], swiftSettings: optimize),
        .executableTarget(name: "parry", dependencies: ["ParryLua", "ParryDist"], swiftSettings: optimize),
        .target(name: "CFuzzCoverage", dependencies: ["CLua"]),
        .executableTarget(name: "ParryFuzz", dependencies: ["ParryLua", "CFuzzCoverage", "CLua"], swiftSettings: optimize),

        .testTarget(name: "ParryCoreTests", dependencies: ["ParryCore"]),
        .testTarget(name: "ParryNNTests", dependencies: ["ParryNN", "ParryCore"]),
        .testTarget(name: "ParryDataTests", dependencies: ["ParryData", "ParryCore"]),
        .testTarget(name: "ParryRobustTests", dependencies: ["ParryRobust", "ParryNN", "ParryCore", "ParryData"]),
        .testTarget(name: "ParryDistTests", dependencies: ["ParryDist", "ParryCore"]),
        .testTarget(name: "ParryFedTests", dependencies: ["ParryFed", "ParryNN", "ParryCore"]),
        .testTarget(name: "ParryRLTests", dependencies: ["ParryRL", "ParryNN", "ParryCore"], resources: [.copy("Fixtures")]),
        .testTarget(name: "ParryLuaTests", dependencies: ["ParryLua", "ParryCore"]),
    ],
    swiftLanguageModes: [.v5]
)
