"""PyTorch's side of `make bench`: the workloads of scripts/bench/workloads.lua,
written as ../shared/peers/torch_bench.py writes them. Prints
"name<TAB>seconds<TAB>note" lines. Needs torch (torchattacks for pgd20)."""
import gzip, struct, sys, time
import numpy as np, torch, torch.nn as nn, torch.nn.functional as F

import os
# Optional arguments: the workloads to run (default all). PARRY_BENCH_QUICK=1:
# the small versions scripts/bench/workloads.lua runs under the same variable.
only = set(sys.argv[1:])
want = lambda name: not only or name in only
QUICK = os.environ.get("PARRY_BENCH_QUICK") == "1"
IMAGES = 12800 if QUICK else 60000   # training images per epoch
BATCH = 32 if QUICK else 128         # the ResNet rows' batch
ATTACKED = 200 if QUICK else 1000    # test images the attack rows attack
torch.manual_seed(0)

def emit(name, seconds, note=""):
    print(f"{name}\t{seconds:.9g}\t{note}", flush=True)

def best_of(reps, f):
    f(); best = float("inf")
    for _ in range(reps):
        s = time.perf_counter(); f(); best = min(best, time.perf_counter() - s)
    return best

if want("sgemm2048"):
    a, b = torch.randn(2048, 2048), torch.randn(2048, 2048)
    emit("sgemm2048", best_of(5, lambda: a @ b), "2048x2048")
if want("tiny_add"):
    a = torch.randn(16); n = 200000
    def loop():
        for _ in range(n): a + a
    emit("tiny_add", best_of(3, loop) / n, "per call")

D = "/usr/share/datasets/fashion-mnist/"
def idx(path):
    b = gzip.open(D + path).read(); nd = b[3]; dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)
if want("mlp_epoch") or want("cnn_epoch") or want("pgd20") or want("autoattack_fast") or want("fedavg_100x600"):
    Xtr = torch.tensor(idx("train-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).unsqueeze(1)
    Ytr = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.long)
    Xte = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).unsqueeze(1)
    Yte = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
def epoch(model, n=IMAGES, bs=128):
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9); perm = torch.randperm(60000)[:n]
    s = time.perf_counter()
    for i in range(0, n, bs):
        j = perm[i:i + bs]; loss = F.cross_entropy(model(Xtr[j]), Ytr[j]); opt.zero_grad(); loss.backward(); opt.step()
    return time.perf_counter() - s
def acc(model, X, Y):
    with torch.no_grad(): return (model(X).argmax(1) == Y).float().mean().item()
if want("mlp_epoch"):
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    emit("mlp_epoch", epoch(mlp), f"test acc {acc(mlp, Xte, Yte):.4f}")
if want("cnn_epoch") or want("pgd20") or want("autoattack_fast"):
    cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
    s = epoch(cnn)
    if want("cnn_epoch"): emit("cnn_epoch", s, f"test acc {acc(cnn, Xte, Yte):.4f}")
if want("pgd20") or want("autoattack_fast"):
    try:
        import torchattacks
        cnn.eval(); X, Y = Xte[:ATTACKED], Yte[:ATTACKED]
        if want("pgd20"):
            atk = torchattacks.PGD(cnn, eps=0.1, alpha=0.01, steps=20, random_start=True)
            s = time.perf_counter(); xa = atk(X, Y); emit("pgd20", time.perf_counter() - s, f"robust acc {acc(cnn, xa, Y):.4f}")
        if want("autoattack_fast"):
            # parry's "fast" AutoAttack from torchattacks' pieces: APGD-CE (100 steps),
            # APGD-T on the DLR loss (100 steps, 3 target classes), Square (1000
            # queries), each on the points still robust (MultiAttack).
            apgdt = torchattacks.APGDT(cnn, eps=0.1, steps=100, n_classes=10)
            apgdt.n_target_classes = 3
            atk = torchattacks.MultiAttack([torchattacks.APGD(cnn, eps=0.1, steps=100, loss="ce"), apgdt,
                                            torchattacks.Square(cnn, eps=0.1, n_queries=1000)])
            s = time.perf_counter(); xa = atk(X, Y)
            emit("autoattack_fast", time.perf_counter() - s, f"robust acc {acc(cnn, xa, Y):.4f}")
    except ImportError:
        pass
class Block(nn.Module):
    # the CIFAR ResNets' BasicBlock (parry.models' ResNet, kuangliu/pytorch-cifar)
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False); self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False); self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)) if stride != 1 or cin != cout else nn.Identity()
    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x))); y = self.bn2(self.conv2(y)); return F.relu(y + self.shortcut(x))
def resnet(stem, widths, blocks):
    # a 3x3 stem, then stages of BasicBlocks (stride 2 at the start of every stage but the first)
    layers = [nn.Conv2d(3, stem, 3, 1, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU()]
    cin = stem
    for i, (w, n) in enumerate(zip(widths, blocks)):
        for b in range(n): layers.append(Block(cin, w, 2 if (b == 0 and i > 0) else 1)); cin = w
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cin, 10))
resnet20 = lambda: resnet(16, [16, 32, 64], [3, 3, 3])
resnet18 = lambda: resnet(64, [64, 128, 256, 512], [2, 2, 2, 2])   # the model RiFT's code uses
for name, make in (("resnet20", resnet20), ("resnet18", resnet18)):
    if want(name + "_fwd_bwd"):
        net = make()
        x, y = torch.rand(BATCH, 3, 32, 32), torch.randint(0, 10, (BATCH,))
        def step():
            net.zero_grad(); F.cross_entropy(net(x), y).backward()
        emit(name + "_fwd_bwd", best_of(3, step), f"batch {BATCH}x3x32x32")

if want("fedavg_100x600"):
    # FedAvg as Flower's simulation does it, sequentially in one process:
    # 100 iid clients x 600 images, 1 local epoch (batch 32, SGD lr 0.05) of
    # the MLP from the global weights, sample-weighted mean of the deltas,
    # server model evaluated on the test set each round; 5 rounds.
    torch.manual_seed(0)
    mk = lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    server, local = mk(), mk()
    parts = torch.randperm(60000).view(100, 600)
    s = time.perf_counter(); train_t = 0.0
    for rnd in range(5):
        w = [p.detach().clone() for p in server.parameters()]
        agg = [torch.zeros_like(p) for p in w]
        t0 = time.perf_counter()
        for k in range(100):
            with torch.no_grad():
                for p, q in zip(local.parameters(), w): p.copy_(q)
            opt = torch.optim.SGD(local.parameters(), lr=0.05)
            idx_k = parts[k][torch.randperm(600)]
            for i in range(0, 600, 32):
                j = idx_k[i:i + 32]; loss = F.cross_entropy(local(Xtr[j]), Ytr[j]); opt.zero_grad(); loss.backward(); opt.step()
            with torch.no_grad():
                for a, p, q in zip(agg, local.parameters(), w): a.add_(p - q, alpha=1 / 100)
        train_t += time.perf_counter() - t0
        with torch.no_grad():
            for p, a in zip(server.parameters(), agg): p.add_(a)
        g = acc(server, Xte, Yte)
    total = time.perf_counter() - s
    emit("fedavg_100x600", total, f"{5 / total:.2f} rounds/s, {100 * (total - train_t) / total:.1f}% outside local training, global acc {g:.4f}")

if want("rift_mrc"):
    # The official code's layer_sharpness (microsoft/robustlearn RiFT/main.py)
    # for one module, without its deepcopy of the model: conv4 of
    # examples/rift.lua's CNN, 10 passes over 1,024 images as the fixed set.
    Xte = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255).unsqueeze(1)
    Yte = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)
    torch.manual_seed(0)
    blk = lambda i, o: [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
    net = nn.Sequential(*blk(1, 16), *blk(16, 16), nn.MaxPool2d(2), *blk(16, 32), *blk(32, 32), nn.MaxPool2d(2),
                        nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)).eval()
    X, Y = Xte[:1024], Yte[:1024]
    crit = nn.CrossEntropyLoss()
    def evaluate():
        with torch.no_grad():
            tot, loss = 0, 0.0
            for i in range(0, 1024, 512):
                out = net(X[i:i + 512]); loss += crit(out, Y[i:i + 512]).item() * out.shape[0]; tot += out.shape[0]
            return loss / tot
    def mrc():
        w = net[10].weight                    # conv4 ("11" in parry's 1-based names)
        init = w.detach().clone()
        for p in net.parameters(): p.requires_grad = p is w
        opt = torch.optim.SGD([w], lr=1)
        loss0, best = evaluate(), 0.0
        for _ in range(10):
            perm = torch.randperm(1024)
            for i in range(0, 1024, 512):
                j = perm[i:i + 512]; opt.zero_grad(); (-crit(net(X[j]), Y[j])).backward(); opt.step()
            with torch.no_grad():
                diff = w - init; times = torch.linalg.norm(diff) / torch.linalg.norm(init)
                if times > 0.1: w.copy_(init + diff / times * 0.1)
            best = max(best, evaluate())
        with torch.no_grad(): w.copy_(init)
        return best - loss0
    out = {}
    def run(): out["m"] = mrc()
    emit("rift_mrc", best_of(2, run), f"conv4, 10 passes over 1024 images; MRC {out['m']:.4f}")

if want("dverge_step"):
    # One batch of the DVERGE code's round-robin (train/train_dverge.py with
    # distillation.py's Linf_distillation), written here: the target features
    # are recomputed at every step, as the code does (layer 20 = the logits).
    models = [resnet20() for _ in range(3)]
    opts = [torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4) for m in models]
    x, y = torch.rand(128, 3, 32, 32), torch.randint(0, 10, (128,))
    xs = x[torch.randperm(128)]
    def distill(m, eps=0.07, alpha=0.007, steps=10):
        z, g = x.clone(), torch.zeros_like(x)
        for _ in range(steps):
            z.requires_grad_(True)
            loss = F.mse_loss(m(z), m(xs).detach())
            m.zero_grad(); loss.backward()
            with torch.no_grad():
                d = z.grad / z.grad.abs().flatten(1).sum(1).clamp(min=1e-12).view(-1, 1, 1, 1)
                g = g + d
                z = torch.min(torch.max(z - alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
        return z.detach()
    def step():
        for m in models: m.train()
        distilled = [distill(m) for m in models]
        for i, m in enumerate(models):
            loss = sum(F.cross_entropy(m(d), y) for j, d in enumerate(distilled) if j != i)
            opts[i].zero_grad(); loss.backward(); opts[i].step()
    emit("dverge_step", best_of(2, step), "3 ResNet-20, batch 128, 10 distillation steps at the logits")
