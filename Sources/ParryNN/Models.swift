import ParryCore

// The model zoo: small networks for Fashion-MNIST-sized inputs and the
// CIFAR-style ResNets used by the robustness papers. Names follow PyTorch's
// (conv1, bn1, layer2.1.conv2, fc) with parry's 1-based Sequential indices.

public enum Models {
    /// Flatten, then Linear/ReLU layers through `sizes` (e.g. [784, 256, 10]).
    public static func mlp(_ sizes: [Int], dropout: Double = 0) throws -> Sequential {
        guard sizes.count >= 2 else { throw TensorError("mlp needs at least an input and an output size, got \(sizes)") }
        var layers: [Module] = [Flatten()]
        for i in 0..<(sizes.count - 1) {
            layers.append(try Linear(sizes[i], sizes[i + 1]))
            if i < sizes.count - 2 {
                layers.append(Activation(.ReLU))
                if dropout > 0 { layers.append(try Dropout(dropout)) }
            }
        }
        return Sequential(layers)
    }

    /// conv(c→32, 3, p1)-ReLU-pool2 – conv(32→64, 3, p1)-ReLU-pool2 – fc(64·(s/4)²→hidden)-ReLU – fc(hidden→classes).
    public static func smallCNN(inChannels: Int = 1, classes: Int = 10, size: Int = 28, hidden: Int = 128) throws -> Sequential {
        guard size >= 4 else { throw TensorError("input size must be at least 4, got \(size)") }
        let side = size / 2 / 2
        return Sequential([
            try Conv2d(inChannels, 32, 3, padding: 1), Activation(.ReLU), MaxPool2d(2),
            try Conv2d(32, 64, 3, padding: 1), Activation(.ReLU), MaxPool2d(2),
            Flatten(), try Linear(64 * side * side, hidden), Activation(.ReLU), try Linear(hidden, classes),
        ])
    }

    public static func resnet20(inChannels: Int = 3, classes: Int = 10, leakySlope: Double? = nil) throws -> ResNet {
        try ResNet(inChannels: inChannels, classes: classes, stem: 16, widths: [16, 32, 64], blocks: [3, 3, 3], leakySlope: leakySlope)
    }

    /// The CIFAR ResNet family of He et al. (2016, §4.2) that DVERGE and most
    /// ensemble papers use: depth 6n+2, three stages of n BasicBlocks with
    /// widths w, 2w, 4w (ResNet-20: n = 3, w = 16).
    public static func resnet(depth: Int, width: Int = 16, inChannels: Int = 3, classes: Int = 10, leakySlope: Double? = nil) throws -> ResNet {
        guard depth >= 8, (depth - 2) % 6 == 0 else { throw TensorError("depth must be 6n+2 with n ≥ 1 (8, 14, 20, 32, 44, 56, …), got \(depth)") }
        guard width >= 1 else { throw TensorError("width must be positive, got \(width)") }
        let n = (depth - 2) / 6
        return try ResNet(inChannels: inChannels, classes: classes, stem: width, widths: [width, 2 * width, 4 * width],
                          blocks: [n, n, n], leakySlope: leakySlope)
    }

    /// The feature taps DVERGE distils at, in forward order. ResNet: the stem's
    /// BatchNorm output (before its ReLU), then for every block its bn1 output
    /// (before the ReLU) and its residual sum (before the final ReLU), then the
    /// logits — 20 names for ResNet-20, as the official code's get_features.
    /// Sequential: the output of every child followed by an activation (the
    /// pre-activations), and the last child (the logits).
    public static func featureLayers(_ m: Module) throws -> [String] {
        if m is ResNet {
            var names = ["bn1"]
            for (stage, s) in m.children where stage.hasPrefix("layer") {
                for (b, _) in s.children { names += ["\(stage).\(b).bn1", "\(stage).\(b).sum"] }
            }
            return names + ["fc"]
        }
        if m is Sequential, !m.children.isEmpty {
            let c = m.children
            var names = [String]()
            for i in 0..<c.count where i == c.count - 1 || c[i + 1].module is Activation { names.append(c[i].name) }
            return names
        }
        throw TensorError("feature_layers knows the zoo's ResNets and Sequential models, not a \(m.typeName); name the layers explicitly (model:feature_names() lists every valid one)")
    }

    public static func resnet18(inChannels: Int = 3, classes: Int = 10) throws -> ResNet {
        try ResNet(inChannels: inChannels, classes: classes, stem: 64, widths: [64, 128, 256, 512], blocks: [2, 2, 2, 2])
    }
}

/// conv3×3-BN-ReLU-conv3×3-BN plus a shortcut (1×1 conv + BN when the shape
/// changes), then ReLU (LeakyReLU with `leakySlope`, as GAL's members).
public final class BasicBlock: Module {
    public let leakySlope: Double?
    private init(leakySlope: Double?) { self.leakySlope = leakySlope; super.init() }
    public override func emptyCopy() throws -> Module { BasicBlock(leakySlope: leakySlope) }
    /// "sum": the residual sum before the final ReLU.
    public override var pointNames: [String] { ["sum"] }
    public init(_ cin: Int, _ cout: Int, stride: Int, leakySlope: Double? = nil) throws {
        self.leakySlope = leakySlope
        super.init()
        register(module: try Conv2d(cin, cout, 3, stride: stride, padding: 1, bias: false), as: "conv1")
        register(module: try BatchNorm(cout, spatial: true), as: "bn1")
        register(module: try Conv2d(cout, cout, 3, stride: 1, padding: 1, bias: false), as: "conv2")
        register(module: try BatchNorm(cout, spatial: true), as: "bn2")
        if stride != 1 || cin != cout {
            register(module: Sequential([try Conv2d(cin, cout, 1, stride: stride, bias: false), try BatchNorm(cout, spatial: true)]),
                     as: "shortcut")
        }
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        func run(_ name: String, _ t: Tensor) throws -> Tensor {
            guard let m = child(name) else { throw TensorError("BasicBlock has no \(name)") }
            return try m(t)
        }
        var y: Tensor
        if leakySlope == nil, let bn = child("bn1") as? BatchNorm {
            y = try bn.forwardReLU(run("conv1", x))            // bn → relu fused (unless hooks watch bn1)
        } else {
            y = try activate(run("bn1", run("conv1", x)), leakySlope)
        }
        y = try run("bn2", run("conv2", y))
        let s = child("shortcut") == nil ? x : try run("shortcut", x)
        return try activate(tap("sum", y + s), leakySlope)
    }
}

/// CIFAR-style ResNet: 3×3 stem (no max-pool), stages of BasicBlocks (the
/// first of each later stage strides by 2), global average pool, linear head.
/// Stages are `layer1`…; features of any stage by name (`features`).
public final class ResNet: Module {
    public let leakySlope: Double?
    private init(leakySlope: Double?) { self.leakySlope = leakySlope; super.init() }
    public override func emptyCopy() throws -> Module { ResNet(leakySlope: leakySlope) }
    public init(inChannels: Int, classes: Int, stem: Int, widths: [Int], blocks: [Int], leakySlope: Double? = nil) throws {
        guard inChannels > 0, classes > 0 else { throw TensorError("in_channels and classes must be positive") }
        if let s = leakySlope, !(s >= 0 && s < 1) { throw TensorError("leaky_relu slope must be in [0, 1), got \(s)") }
        self.leakySlope = leakySlope
        super.init()
        register(module: try Conv2d(inChannels, stem, 3, padding: 1, bias: false), as: "conv1")
        register(module: try BatchNorm(stem, spatial: true), as: "bn1")
        var cin = stem
        for (i, (w, n)) in zip(widths, blocks).enumerated() {
            var stage = [Module]()
            for b in 0..<n {
                stage.append(try BasicBlock(cin, w, stride: (b == 0 && i > 0) ? 2 : 1, leakySlope: leakySlope))
                cin = w
            }
            register(module: Sequential(stage), as: "layer\(i + 1)")
        }
        register(module: AdaptiveAvgPool2d(1), as: "avgpool")
        register(module: try Linear(cin, classes), as: "fc")
    }

    public override func forward(_ x: Tensor) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("ResNet expects N×C×H×W input, got shape \(shapeString(x.shape))") }
        var y = x
        for (name, m) in children {
            if name == "bn1", leakySlope == nil, let bn = m as? BatchNorm { y = try bn.forwardReLU(y); continue }
            y = try m(y)
            if name == "bn1" { y = try activate(y, leakySlope) }
            if name == "avgpool" { y = try y.flatten(1, 3) }
        }
        return y
    }
}

/// ReLU, or LeakyReLU with the given slope.
private func activate(_ t: Tensor, _ leakySlope: Double?) throws -> Tensor {
    guard let s = leakySlope else { return try t.relu() }
    return try F.leakyRelu(t, slope: s)
}
