"""The peer of parry's fl_10k_clients row: Flower's simulation engine
(flwr[simulation], Ray backend) on the same task — 10,000 iid Fashion-MNIST
clients (6 images each; FL_CLIENTS=N for other counts) of the 784-64-10 MLP in
PyTorch, 2 FedAvg rounds of 1 local epoch (batch 32, SGD lr 0.05), no
client-side evaluation, the global model evaluated on the 10k test images
after each round. Prints "fl_10k_clients<TAB>seconds<TAB>note" with the peak
resident memory of the whole process tree (Ray's workers included), sampled
every 0.1 s.

  scripts/bench/flower_venv     # makes ~/.cache/parry/flower-venv
  ~/.cache/parry/flower-venv/bin/python scripts/bench/flower_fl.py
"""
import gzip, os, struct, sys, threading, time, warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

warnings.filterwarnings("ignore")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
torch.set_num_threads(1)
import flwr as fl  # noqa: E402
from flwr.common import ndarrays_to_parameters  # noqa: E402

N = int(os.environ.get("FL_CLIENTS", "10000"))
D = "/usr/share/datasets/fashion-mnist/"


def idx(path):
    b = gzip.open(D + path).read(); nd = b[3]; dims = struct.unpack(">" + "I" * nd, b[4:4 + 4 * nd])
    return np.frombuffer(b, np.uint8, offset=4 + 4 * nd).reshape(dims)


def tree_rss():
    """Resident bytes of this process and all its descendants (from /proc)."""
    kids = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            kids.setdefault(ppid, []).append(int(pid))
        except (OSError, IndexError, ValueError):
            pass
    total, todo = 0, [os.getpid()]
    while todo:
        p = todo.pop()
        todo.extend(kids.get(p, []))
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except OSError:
            pass
    return total


peak = [0]
stop = threading.Event()


def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], tree_rss())
        time.sleep(0.1)


def mlp():
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 64), nn.ReLU(), nn.Linear(64, 10))


def get_w(m):
    return [v.detach().cpu().numpy() for v in m.state_dict().values()]


def set_w(m, ws):
    m.load_state_dict({k: torch.tensor(w) for k, w in zip(m.state_dict().keys(), ws)})


# Each Ray worker loads the training set once, on its first client, from the
# file (not from the driver: a client_fn that closed over the tensors would be
# pickled with 190 MB of images for every client).
_WORKER = {}


def worker_data():
    if not _WORKER:
        _WORKER["x"] = torch.tensor(idx("train-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255)
        _WORKER["y"] = torch.tensor(idx("train-labels-idx1-ubyte.gz"), dtype=torch.long)
        g = torch.Generator().manual_seed(0)
        _WORKER["parts"] = torch.randperm(60000, generator=g).chunk(N)
    return _WORKER["x"], _WORKER["y"], _WORKER["parts"]


class Client(fl.client.NumPyClient):
    def __init__(self, cid):
        self.cid = cid

    def fit(self, parameters, config):
        torch.set_num_threads(1)
        xtr, ytr, parts = worker_data()
        idx_ = parts[self.cid]
        m = mlp(); set_w(m, parameters)
        opt = torch.optim.SGD(m.parameters(), lr=0.05)
        perm = idx_[torch.randperm(len(idx_))]
        for i in range(0, len(perm), 32):
            j = perm[i:i + 32]
            loss = F.cross_entropy(m(xtr[j]), ytr[j]); opt.zero_grad(); loss.backward(); opt.step()
        return get_w(m), len(idx_), {}


def client_fn(context):
    cid = int(context.node_config["partition-id"]) if hasattr(context, "node_config") else int(context)
    return Client(cid).to_client()


def main():
    threading.Thread(target=sample, daemon=True).start()
    xte = torch.tensor(idx("t10k-images-idx3-ubyte.gz"), dtype=torch.float32).div_(255)
    yte = torch.tensor(idx("t10k-labels-idx1-ubyte.gz"), dtype=torch.long)

    acc = [0.0]

    def evaluate(server_round, parameters, config):
        m = mlp(); set_w(m, parameters)
        with torch.no_grad():
            acc[0] = (m(xte).argmax(1) == yte).float().mean().item()
        return 0.0, {"accuracy": acc[0]}

    torch.manual_seed(0)
    strategy = fl.server.strategy.FedAvg(fraction_fit=1.0, fraction_evaluate=0.0, min_fit_clients=N,
                                         min_available_clients=N, min_evaluate_clients=0, evaluate_fn=evaluate,
                                         initial_parameters=ndarrays_to_parameters(get_w(mlp())))
    t0 = time.perf_counter()
    fl.simulation.start_simulation(client_fn=client_fn, num_clients=N, config=fl.server.ServerConfig(num_rounds=2),
                                   strategy=strategy, client_resources={"num_cpus": 1},
                                   ray_init_args={"num_cpus": os.cpu_count(), "include_dashboard": False,
                                                  "log_to_driver": False})
    total = time.perf_counter() - t0
    stop.set()
    print(f"fl_10k_clients\t{total:.6f}\t{N} clients: peak {peak[0] / 2**20:.0f} MB (process tree), "
          f"global acc {acc[0]:.4f}, flwr {fl.__version__}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
