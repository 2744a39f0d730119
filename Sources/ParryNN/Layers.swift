import Foundation
import ParryCore

/// Uniform(−bound, bound) initialization, drawn from the shared generator.
func uniformInit(_ shape: [Int], bound: Double) throws -> Tensor {
    try Tensor.zeros(shape).uniform_(-bound, bound).requiresGrad_()
}

/// y = x·Wᵀ + b. PyTorch's default init: W and b ~ U(−1/√in, 1/√in)
/// (kaiming_uniform with a = √5).
public final class Linear: Module {
    public let inFeatures: Int, outFeatures: Int
    public init(_ inFeatures: Int, _ outFeatures: Int, bias: Bool = true) throws {
        guard inFeatures > 0, outFeatures > 0 else { throw TensorError("Linear sizes must be positive, got \(inFeatures), \(outFeatures)") }
        self.inFeatures = inFeatures; self.outFeatures = outFeatures
        super.init()
        let bound = 1 / Double(inFeatures).squareRoot()
        register(parameter: try uniformInit([outFeatures, inFeatures], bound: bound), as: "weight")
        if bias { register(parameter: try uniformInit([outFeatures], bound: bound), as: "bias") }
    }
    public override var extraDescription: String { "in_features=\(inFeatures), out_features=\(outFeatures), bias=\(parameter("bias") != nil)" }
    public override func emptyCopy() throws -> Module { try Linear(inFeatures, outFeatures, bias: false) }
    public override func forward(_ x: Tensor) throws -> Tensor {
        guard let w = parameter("weight") else { throw TensorError("Linear has no weight") }
        return try F.linear(x, w, parameter("bias"))
    }
}

/// 2-D convolution over N×C×H×W; init as Linear with fan_in = C·k·k.
public final class Conv2d: Module {
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    public init(_ inChannels: Int, _ outChannels: Int, _ kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) throws {
        guard inChannels > 0, outChannels > 0, kernel > 0, stride > 0, padding >= 0 else {
            throw TensorError("Conv2d needs positive channels, kernel and stride and non-negative padding")
        }
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride; self.padding = padding
        super.init()
        let bound = 1 / Double(inChannels * kernel * kernel).squareRoot()
        register(parameter: try uniformInit([outChannels, inChannels, kernel, kernel], bound: bound), as: "weight")
        if bias { register(parameter: try uniformInit([outChannels], bound: bound), as: "bias") }
    }
    public override var extraDescription: String {
        "\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding), bias=\(parameter("bias") != nil)"
    }
    public override func emptyCopy() throws -> Module { try Conv2d(inChannels, outChannels, kernel, stride: stride, padding: padding, bias: false) }
    public override func forward(_ x: Tensor) throws -> Tensor {
        guard let w = parameter("weight") else { throw TensorError("Conv2d has no weight") }
        return try F.conv2d(x, w, parameter("bias"), stride: stride, padding: padding)
    }
}

/// 1-D convolution over N×C×L (weight O×C×k, PyTorch's layout); init as Linear with fan_in = C·k.
public final class Conv1d: Module {
    public let inChannels: Int, outChannels: Int, kernel: Int, stride: Int, padding: Int
    public init(_ inChannels: Int, _ outChannels: Int, _ kernel: Int, stride: Int = 1, padding: Int = 0, bias: Bool = true) throws {
        guard inChannels > 0, outChannels > 0, kernel > 0, stride > 0, padding >= 0 else {
            throw TensorError("Conv1d needs positive channels, kernel and stride and non-negative padding")
        }
        self.inChannels = inChannels; self.outChannels = outChannels; self.kernel = kernel; self.stride = stride; self.padding = padding
        super.init()
        let bound = 1 / Double(inChannels * kernel).squareRoot()
        register(parameter: try uniformInit([outChannels, inChannels, kernel], bound: bound), as: "weight")
        if bias { register(parameter: try uniformInit([outChannels], bound: bound), as: "bias") }
    }
    public override var extraDescription: String {
        "\(inChannels), \(outChannels), kernel_size=\(kernel), stride=\(stride), padding=\(padding), bias=\(parameter("bias") != nil)"
    }
    public override func emptyCopy() throws -> Module { try Conv1d(inChannels, outChannels, kernel, stride: stride, padding: padding, bias: false) }
    public override func forward(_ x: Tensor) throws -> Tensor {
        guard let w = parameter("weight") else { throw TensorError("Conv1d has no weight") }
        return try F.conv1d(x, w, parameter("bias"), stride: stride, padding: padding)
    }
}

/// Max pooling over the last dim of N×C×L.
public final class MaxPool1d: Module {
    public let kernel: Int, stride: Int
    public init(_ kernel: Int, stride: Int? = nil) throws {
        guard kernel > 0, (stride ?? kernel) > 0 else { throw TensorError("MaxPool1d needs a positive kernel and stride") }
        self.kernel = kernel; self.stride = stride ?? kernel
    }
    public override var extraDescription: String { "kernel_size=\(kernel), stride=\(stride)" }
    public override func emptyCopy() throws -> Module { try MaxPool1d(kernel, stride: stride) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.maxPool1d(x, kernel: kernel, stride: stride) }
}

/// Adaptive max pooling of N×C×L to N×C×size (PyTorch's windows); size 1 is
/// the global max over the set dimension that makes PointNet order-free.
public final class AdaptiveMaxPool1d: Module {
    public let size: Int
    public init(_ size: Int) throws {
        guard size > 0 else { throw TensorError("AdaptiveMaxPool1d needs a positive output size") }
        self.size = size
    }
    public override var extraDescription: String { "output_size=\(size)" }
    public override func emptyCopy() throws -> Module { try AdaptiveMaxPool1d(size) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.adaptiveMaxPool1d(x, size) }
}

/// Layer normalization over the last dims `shape` (PyTorch's LayerNorm): biased
/// variance, eps inside the square root, optional elementwise affine (γ = 1, β = 0).
public final class LayerNorm: Module {
    public let shape: [Int], eps: Double, affine: Bool
    public init(_ shape: [Int], eps: Double = 1e-5, elementwiseAffine: Bool = true) throws {
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else { throw TensorError("LayerNorm needs a non-empty positive normalized shape, got \(shape)") }
        guard eps > 0 else { throw TensorError("LayerNorm eps must be positive") }
        self.shape = shape; self.eps = eps; self.affine = elementwiseAffine
        super.init()
        if elementwiseAffine {
            register(parameter: try Tensor.ones(shape).requiresGrad_(), as: "weight")
            register(parameter: try Tensor.zeros(shape).requiresGrad_(), as: "bias")
        }
    }
    public override var extraDescription: String { "\(shapeString(shape)), eps=\(eps), elementwise_affine=\(affine)" }
    public override func emptyCopy() throws -> Module { try LayerNorm(shape, eps: eps, elementwiseAffine: affine) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.layerNorm(x, shape, weight: parameter("weight"), bias: parameter("bias"), eps: eps) }
}

/// A lookup table: int64 indices (0-based in Swift) of any shape to rows of
/// the weight, shape indices.shape + [dim]; weight ~ N(0, 1) as PyTorch.
public final class Embedding: Module {
    public let count: Int, dim: Int
    /// The index of the first row in inputs: 0 from Swift, 1 for modules made from Lua (parry's 1-based edge).
    public let indexBase: Int64
    public init(_ count: Int, _ dim: Int, indexBase: Int64 = 0) throws {
        guard count > 0, dim > 0 else { throw TensorError("Embedding sizes must be positive, got \(count), \(dim)") }
        self.count = count; self.dim = dim; self.indexBase = indexBase
        super.init()
        register(parameter: try Tensor.randn([count, dim]).requiresGrad_(), as: "weight")
    }
    public override var extraDescription: String { "\(count), \(dim)" }
    public override func emptyCopy() throws -> Module { try Embedding(count, dim, indexBase: indexBase) }
    public override func forward(_ x: Tensor) throws -> Tensor {
        guard let w = parameter("weight") else { throw TensorError("Embedding has no weight") }
        guard x.dtype == .int64 else { throw TensorError("Embedding expects int64 indices, got \(x.dtype.rawValue)") }
        return try F.embedding(indexBase == 0 ? x : x.binary(.sub, .int(indexBase)), w)
    }
}

public final class MaxPool2d: Module {
    public let kernel: Int, stride: Int, padding: Int
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) { self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding }
    public override var extraDescription: String { "kernel_size=\(kernel), stride=\(stride), padding=\(padding)" }
    public override func emptyCopy() throws -> Module { MaxPool2d(kernel, stride: stride, padding: padding) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.maxPool2d(x, kernel: kernel, stride: stride, padding: padding) }
}

public final class AvgPool2d: Module {
    public let kernel: Int, stride: Int, padding: Int
    public init(_ kernel: Int, stride: Int? = nil, padding: Int = 0) { self.kernel = kernel; self.stride = stride ?? kernel; self.padding = padding }
    public override var extraDescription: String { "kernel_size=\(kernel), stride=\(stride), padding=\(padding)" }
    public override func emptyCopy() throws -> Module { AvgPool2d(kernel, stride: stride, padding: padding) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.avgPool2d(x, kernel: kernel, stride: stride, padding: padding) }
}

public final class AdaptiveAvgPool2d: Module {
    public let size: (Int, Int)
    public init(_ size: Int) { self.size = (size, size) }
    init(_ size: (Int, Int)) { self.size = size }
    public override func emptyCopy() throws -> Module { AdaptiveAvgPool2d(size) }
    public override var extraDescription: String { "output_size=\(size.0)" }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.adaptiveAvgPool2d(x, size) }
}

/// BatchNorm over channels (dim 2 in Lua terms) for N×C or N×C×H×W inputs.
public final class BatchNorm: Module {
    public let features: Int, momentum: Double, eps: Double, spatial: Bool
    public init(_ features: Int, spatial: Bool, momentum: Double = 0.1, eps: Double = 1e-5) throws {
        guard features > 0 else { throw TensorError("BatchNorm needs a positive number of features") }
        self.features = features; self.momentum = momentum; self.eps = eps; self.spatial = spatial
        super.init()
        register(parameter: try Tensor.ones([features]).requiresGrad_(), as: "weight")
        register(parameter: try Tensor.zeros([features]).requiresGrad_(), as: "bias")
        register(buffer: try Tensor.zeros([features]), as: "running_mean")
        register(buffer: try Tensor.ones([features]), as: "running_var")
        register(buffer: try Tensor.zeros([], dtype: .int64), as: "num_batches_tracked")
    }
    public override var typeName: String { spatial ? "BatchNorm2d" : "BatchNorm1d" }
    public override func emptyCopy() throws -> Module { try BatchNorm(features, spatial: spatial, momentum: momentum, eps: eps) }
    public override var extraDescription: String { "\(features), eps=\(eps), momentum=\(momentum)" }
    public override func forward(_ x: Tensor) throws -> Tensor { try normalize(x, relu: false) }

    /// relu(self(x)), as one fused op when nothing can observe the value in
    /// between (no hooks on this module): what ResNet blocks call for bn → relu.
    public func forwardReLU(_ x: Tensor) throws -> Tensor {
        hasHooks ? try self(x).relu() : try normalize(x, relu: true)
    }

    private func normalize(_ x: Tensor, relu: Bool) throws -> Tensor {
        guard spatial ? x.ndim == 4 : (x.ndim == 2 || x.ndim == 3) else {
            throw TensorError("\(typeName) expects a \(spatial ? "4-d N×C×H×W" : "2-d N×C or 3-d N×C×L") input, got shape \(shapeString(x.shape))")
        }
        if training, let n = buffer("num_batches_tracked") { try n.add_(1) }
        // N×C×L (BatchNorm1d over sequences or point sets): statistics over N and L, as N×C×1×L.
        let input = x.ndim == 3 ? try x.reshape([x.shape[0], x.shape[1], 1, x.shape[2]]) : x
        let y = try F.batchNorm(input, runningMean: buffer("running_mean"), runningVar: buffer("running_var"),
                                weight: parameter("weight"), bias: parameter("bias"), training: training, momentum: momentum,
                                eps: eps, relu: relu)
        return x.ndim == 3 ? try y.reshape(x.shape) : y
    }
}

public final class Dropout: Module {
    public let p: Double
    public init(_ p: Double = 0.5) throws {
        guard p >= 0, p <= 1 else { throw TensorError("dropout probability must be in [0, 1], got \(p)") }
        self.p = p
    }
    public override var extraDescription: String { "p=\(p)" }
    public override func emptyCopy() throws -> Module { try Dropout(p) }
    public override func forward(_ x: Tensor) throws -> Tensor { try F.dropout(x, p: p, training: training) }
}

/// An elementwise activation.
public final class Activation: Module {
    public enum Kind: String { case ReLU, Tanh, Sigmoid, GELU, LeakyReLU }
    public let kind: Kind, slope: Double
    public init(_ kind: Kind, slope: Double = 0.01) { self.kind = kind; self.slope = slope }
    public override var typeName: String { kind.rawValue }
    public override func emptyCopy() throws -> Module { Activation(kind, slope: slope) }
    public override var extraDescription: String { kind == .LeakyReLU ? "negative_slope=\(slope)" : "" }
    public override func forward(_ x: Tensor) throws -> Tensor {
        switch kind {
        case .ReLU: return try x.relu()
        case .Tanh: return try x.tanh()
        case .Sigmoid: return try x.sigmoid()
        case .GELU: return try F.gelu(x)
        case .LeakyReLU: return try F.leakyRelu(x, slope: slope)
        }
    }
}

/// Flattens all dimensions after the first.
public final class Flatten: Module {
    public override func emptyCopy() throws -> Module { Flatten() }
    public override func forward(_ x: Tensor) throws -> Tensor {
        x.ndim <= 1 ? x : try x.flatten(1, x.ndim - 1)
    }
}

public final class Identity: Module {
    public override func emptyCopy() throws -> Module { Identity() }
    public override func forward(_ x: Tensor) throws -> Tensor { x }
}

/// Children applied in order; named "1", "2", ... (1-based, as everything in parry).
/// A BatchNorm followed by a ReLU, and a ReLU followed by a MaxPool2d, run as
/// one fused op each (the bits of the two steps, one pass and one activation
/// fewer) unless a hook watches either module.
public final class Sequential: Module {
    public override func emptyCopy() throws -> Module { Sequential([]) }
    public init(_ modules: [Module]) {
        super.init()
        for (i, m) in modules.enumerated() { register(module: m, as: String(i + 1)) }
    }
    public override func forward(_ x: Tensor) throws -> Tensor {
        var y = x, i = 0
        while i < children.count {
            let m = children[i].module
            if let bn = m as? BatchNorm, i + 1 < children.count, let act = children[i + 1].module as? Activation,
               act.kind == .ReLU, !act.hasHooks {
                y = try bn.forwardReLU(y)      // itself unfused when bn has hooks
                i += 2
                continue
            }
            if let act = m as? Activation, act.kind == .ReLU, !act.hasHooks, y.dtype == .float32, i + 1 < children.count,
               let pool = children[i + 1].module as? MaxPool2d, !pool.hasHooks {
                y = try F.reluMaxPool2d(y, kernel: pool.kernel, stride: pool.stride, padding: pool.padding)
                i += 2
                continue
            }
            y = try m(y)
            i += 1
        }
        return y
    }
}

/// Averages members' probabilities; the output is log of the mean softmax,
/// so it can be used as logits by losses and attacks.
public final class Ensemble: Module {
    public init(_ members: [Module]) throws {
        guard !members.isEmpty else { throw TensorError("an Ensemble needs at least one member") }
        super.init()
        for (i, m) in members.enumerated() { register(module: m, as: String(i + 1)) }
    }
    private override init() { super.init() }
    public override func emptyCopy() throws -> Module { Ensemble() }
    public override func forward(_ x: Tensor) throws -> Tensor {
        guard !children.isEmpty else { throw TensorError("an Ensemble needs at least one member") }
        let total = try addAll(children.map { try $0.module(x).softmax(dim: 1) })
        return try (total / children.count).log()    // log of the mean softmax
    }
}

/// A module whose forward is given as a closure (used by bindings for
/// modules defined in other languages).
open class ClosureModule: Module {
    public var body: ((Tensor) throws -> Tensor)?
    public let name: String
    public init(name: String, _ body: ((Tensor) throws -> Tensor)? = nil) { self.name = name; self.body = body }
    open override func emptyCopy() throws -> Module { ClosureModule(name: name, body) }
    open override var typeName: String { name }
    open override func forward(_ x: Tensor) throws -> Tensor {
        guard let body else { throw TensorError("\(name) does not implement forward") }
        return try body(x)
    }
}
