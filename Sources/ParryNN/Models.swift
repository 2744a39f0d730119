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

    public static func resnet20(inChannels: Int = 3, classes: Int = 10) throws -> ResNet {
        try ResNet(inChannels: inChannels, classes: classes, stem: 16, widths: [16, 32, 64], blocks: [3, 3, 3])
    }

    public static func resnet18(inChannels: Int = 3, classes: Int = 10) throws -> ResNet {
        try ResNet(inChannels: inChannels, classes: classes, stem: 64, widths: [64, 128, 256, 512], blocks: [2, 2, 2, 2])
    }
}

/// conv3×3-BN-ReLU-conv3×3-BN plus a shortcut (1×1 conv + BN when the shape changes), then ReLU.
public final class BasicBlock: Module {
    private override init() { super.init() }
    public override func emptyCopy() throws -> Module { BasicBlock() }
    public init(_ cin: Int, _ cout: Int, stride: Int) throws {
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
        var y = try run("bn1", run("conv1", x)).relu()
        y = try run("bn2", run("conv2", y))
        let s = child("shortcut") == nil ? x : try run("shortcut", x)
        return try (y + s).relu()
    }
}

/// CIFAR-style ResNet: 3×3 stem (no max-pool), stages of BasicBlocks (the
/// first of each later stage strides by 2), global average pool, linear head.
/// Stages are `layer1`…; features of any stage by name (`features`).
public final class ResNet: Module {
    private override init() { super.init() }
    public override func emptyCopy() throws -> Module { ResNet() }
    public init(inChannels: Int, classes: Int, stem: Int, widths: [Int], blocks: [Int]) throws {
        guard inChannels > 0, classes > 0 else { throw TensorError("in_channels and classes must be positive") }
        super.init()
        register(module: try Conv2d(inChannels, stem, 3, padding: 1, bias: false), as: "conv1")
        register(module: try BatchNorm(stem, spatial: true), as: "bn1")
        var cin = stem
        for (i, (w, n)) in zip(widths, blocks).enumerated() {
            var stage = [Module]()
            for b in 0..<n {
                stage.append(try BasicBlock(cin, w, stride: (b == 0 && i > 0) ? 2 : 1))
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
            y = try m(y)
            if name == "bn1" { y = try y.relu() }
            if name == "avgpool" { y = try y.flatten(1, 3) }
        }
        return y
    }
}
