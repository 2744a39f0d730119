import CBLAS
import Foundation

/// Which OpenBLAS kernels this process runs on, and whether they use the
/// CPU's widest vector unit. OpenBLAS (built DYNAMIC_ARCH, as Debian ships
/// it) picks its kernels once, at load time, from the CPU model; a CPU newer
/// than the library's table gets a generic fallback. Debian 12's OpenBLAS
/// 0.3.21 runs its SSE3 "Prescott" kernels on Sapphire/Emerald Rapids Xeons,
/// about 5× below their AVX-512 kernels' float32 GEMM rate (2048² sgemm on 2
/// cores here: 0.40 s vs 0.077 s with OPENBLAS_CORETYPE=SkylakeX). parry
/// reports the mismatch (`parry doctor`, `parry.blas_info()`, the bench
/// header) and leaves the choice to the user: pinning a core type on a CPU
/// without its instructions would crash.
public enum BLASInfo {
    /// Vector instruction sets, narrowest first.
    public enum Vector: Int, Comparable, Sendable {
        case sse = 0, avx, avx2, avx512
        public var name: String { ["SSE", "AVX", "AVX2", "AVX-512"][rawValue] }
        public static func < (a: Vector, b: Vector) -> Bool { a.rawValue < b.rawValue }
    }

    /// OpenBLAS's name for the kernels it chose ("SkylakeX", "Haswell", "Prescott", ...).
    public static let core: String = openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    /// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH NO_AFFINITY ...").
    public static let config: String = openblas_get_config().map { String(cString: $0) }?
        .trimmingCharacters(in: [" ", "\n"]) ?? "unknown"

    /// The widest vector unit the CPU offers.
    public static let cpu: Vector = Vector(rawValue: Int(parry_cpu_vector_level())) ?? .sse

    /// The vector unit a core type's float32 GEMM kernels use (OpenBLAS's x86-64 core names).
    public static func vector(ofCore name: String) -> Vector {
        switch name.lowercased() {
        case "skylakex", "cooperlake", "sapphirerapids": return .avx512
        case "haswell", "zen", "excavator": return .avx2
        case "sandybridge", "bulldozer", "piledriver", "steamroller": return .avx
        default: return .sse
        }
    }

    /// The kernels' vector unit is narrower than the CPU's.
    public static var isFallback: Bool { vector(ofCore: core) < cpu }

    /// The OPENBLAS_CORETYPE that uses the CPU's widest unit, when the chosen kernels do not.
    public static var suggestedCore: String? {
        guard isFallback else { return nil }
        switch cpu {
        case .avx512: return "SkylakeX"
        case .avx2: return "Haswell"
        case .avx: return "Sandybridge"
        case .sse: return nil
        }
    }
}
