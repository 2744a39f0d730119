"""Writes Tests/fixtures/torch_tiny_cnn.safetensors: the weights of a tiny CNN
made with PyTorch (its own 0-based Sequential names), an input batch and
PyTorch's logits for it. The Lua spec nn_interop_spec.lua loads the same
architecture in parry and must reproduce the logits to 1e-5.

Usage: python3 scripts/make_torch_fixture.py   (needs torch and safetensors from PyPI)
"""
import torch
import torch.nn as nn
from safetensors.torch import save_file

torch.manual_seed(0)
net = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
    nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3),
)
# Give BatchNorm non-trivial running statistics, then freeze it in eval mode.
with torch.no_grad():
    for _ in range(3):
        net(torch.randn(8, 1, 8, 8))
net.eval()
x = torch.randn(2, 1, 8, 8)
with torch.no_grad():
    logits = net(x)
tensors = {k: v.contiguous() for k, v in net.state_dict().items()}
tensors["input"] = x.contiguous()
tensors["logits"] = logits.contiguous()
save_file(tensors, "Tests/fixtures/torch_tiny_cnn.safetensors", metadata={"made_by": "scripts/make_torch_fixture.py", "torch": torch.__version__})
print({k: tuple(v.shape) for k, v in tensors.items()})
