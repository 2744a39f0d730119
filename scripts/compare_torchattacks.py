"""Runs torchattacks' FGSM and PGD (random_start=False) on parry's small CNN
checkpoint and writes the adversarial examples, so scripts/compare_torchattacks.lua
can check that parry's attacks give the same answers on the same model and data.

Usage: python3 scripts/compare_torchattacks.py out/cnn.safetensors out/torchattacks.safetensors [n=1000]
(needs torch, torchattacks, safetensors from PyPI)"""
import gzip, struct, sys, time
import numpy as np, torch, torch.nn as nn, torchattacks
from safetensors.torch import load_file, save_file

src, dst = sys.argv[1], sys.argv[2]
n = int(sys.argv[3]) if len(sys.argv) > 3 else 1000
torch.set_num_threads(2)

def idx(path):
    b = gzip.open(path).read(); nd = b[3]; dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)

D = "/usr/share/datasets/fashion-mnist/"
X = torch.tensor(idx(D + "t10k-images-idx3-ubyte.gz")[:n], dtype=torch.float32).div_(255).unsqueeze(1)
Y = torch.tensor(idx(D + "t10k-labels-idx1-ubyte.gz")[:n], dtype=torch.long)

cnn = nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                    nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10))
state = load_file(src)
cnn.load_state_dict({".".join([str(int(p) - 1) if p.isdigit() else p for p in k.split(".")]): v for k, v in state.items()})
cnn.eval()
acc = lambda x: (cnn(x).argmax(1) == Y).float().mean().item()
with torch.no_grad():
    print(f"clean {acc(X):.4f}")
s = time.perf_counter(); fgsm = torchattacks.FGSM(cnn, eps=0.1)(X, Y); t_fgsm = time.perf_counter() - s
s = time.perf_counter(); pgd = torchattacks.PGD(cnn, eps=0.1, alpha=0.01, steps=20, random_start=False)(X, Y); t_pgd = time.perf_counter() - s
with torch.no_grad():
    print(f"torchattacks fgsm {acc(fgsm):.4f} ({t_fgsm:.2f} s), pgd-20 {acc(pgd):.4f} ({t_pgd:.2f} s)")
save_file({"fgsm": fgsm.contiguous(), "pgd": pgd.contiguous()}, dst)
