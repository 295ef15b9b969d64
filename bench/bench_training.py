"""Training throughput of our models against peers, in one run.

All cases train on the same pooled feature table (3 series x 17k bars x 62 features, like the
demo's model input), at the demo's and at the product brief's sizes:
- ours: `gather_windows` over the (N, F) table on the device + `optimisation_step` (the trainer's
  data path and step);
- ours, batch already on device: the same step on a batch gathered before the clock starts. The
  two run in alternating rounds in one process; the input path's cost is the gap between their
  best rounds and must stay under 10 %;
- vanilla nn.TransformerEncoder of the same size (pre-norm, causal mask, same heads and loss),
  fed the same way as ours;
- ours fed by a naive DataLoader over a materialised (N, seq_len, F) copy of every window;
- on a CPU, ours with one thread (the demo's `num_threads: 1`).
Each group runs in a fresh process, so that its peak memory is its own; a rate is the best of
several rounds (the machine is shared). On CUDA, memory is torch.cuda.max_memory_allocated.

Run: .venv/bin/python bench/bench_training.py [--quick] [--device cuda]. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import multiprocessing
import platform
import resource
import sys
import time
from dataclasses import replace

import numpy as np
import torch
from torch import nn

from trading_engine.models import PredictionHeads, build_model
from trading_engine.models.transformer import SinusoidalPositions
from trading_engine.training import TrainingConfig, resolve_device
from trading_engine.training.trainer import optimisation_step
from trading_engine.training.windows import gather_windows, window_offsets

N_ROWS, N_FEATURES, BATCH = 3 * 17_000, 62, 256
SIZES = {
    "demo": {"seq_len": 32, "transformer": {"d_model": 32, "n_heads": 4, "n_layers": 2, "d_ff": 64, "dropout": 0.1},
             "tcn": {"channels": 32, "n_blocks": 3, "kernel_size": 3, "dropout": 0.1}, "steps": 5, "rounds": 12},
    "brief": {"seq_len": 64, "transformer": {"d_model": 128, "n_heads": 8, "n_layers": 4, "d_ff": 512, "dropout": 0.1},
              "tcn": {"channels": 128, "n_blocks": 4, "kernel_size": 3, "dropout": 0.1}, "steps": 2, "rounds": 4},
}


class VanillaTransformer(nn.Module):
    """The peer: torch's own encoder at the same size, with our positions, readout and heads."""

    def __init__(self, n_features: int, seq_len: int, d_model: int, n_heads: int, n_layers: int, d_ff: int,
                 dropout: float) -> None:
        super().__init__()
        self.input_projection = nn.Linear(n_features, d_model)
        self.positions = SinusoidalPositions(seq_len, d_model)
        layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout, activation="gelu", batch_first=True,
                                           norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)
        self.register_buffer("mask", nn.Transformer.generate_square_subsequent_mask(seq_len), persistent=False)
        self.heads = PredictionHeads(d_model)

    def forward(self, x: torch.Tensor):
        h = self.encoder(self.positions(self.input_projection(x)), mask=self.mask, is_causal=True)
        return self.heads(h[:, -1])


def build(name: str, size: dict, device: torch.device) -> nn.Module:
    if name == "vanilla transformer":
        return VanillaTransformer(N_FEATURES, size["seq_len"], **size["transformer"]).to(device)
    return build_model(name, N_FEATURES, size["seq_len"], size[name]).to(device)


def measure(group: dict, results) -> None:
    """Runs in a child process: samples per second of each (model, feed) of `group`, timed in
    interleaved rounds (the best round gives the rate: the machine is shared), and the process's
    peak memory."""
    torch.manual_seed(0)
    if group.get("threads"):
        torch.set_num_threads(group["threads"])
    device = resolve_device(group["device"])
    size = SIZES[group["size"]]
    seq_len = size["seq_len"]
    config = replace(TrainingConfig(), seq_len=seq_len, batch_size=BATCH)
    table = torch.randn(N_ROWS, N_FEATURES, device=device)  # the pooled (N, F) feature table
    target_class = torch.randint(0, 3, (N_ROWS,), device=device)
    target_return = torch.randn(N_ROWS, device=device)
    offsets = window_offsets(seq_len, device)
    valid = torch.arange(seq_len - 1, N_ROWS, device=device)

    def random_rows() -> torch.Tensor:
        return valid[torch.randint(len(valid), (BATCH,), device=device)]

    def feeder(feed: str):
        if feed == "gather on device":  # the trainer's data path
            def batch():
                rows = random_rows()
                return gather_windows(table, rows, offsets), target_class[rows], target_return[rows]
            return batch, table.numel() * 4
        if feed == "batch already on device":
            rows = random_rows()
            ready = (gather_windows(table, rows, offsets), target_class[rows], target_return[rows])
            return (lambda: ready), table.numel() * 4
        # The naive peer: every window copied out once, then shuffled by a DataLoader.
        windows = table.cpu().unfold(0, seq_len, 1).transpose(1, 2).contiguous()  # (N - L + 1, L, F)
        dataset = torch.utils.data.TensorDataset(windows, target_class.cpu()[seq_len - 1:],
                                                 target_return.cpu()[seq_len - 1:])
        loader = torch.utils.data.DataLoader(dataset, batch_size=BATCH, shuffle=True, drop_last=True)
        iterator = iter(loader)

        def batch():
            nonlocal iterator
            try:
                x, c, r = next(iterator)
            except StopIteration:
                iterator = iter(loader)
                x, c, r = next(iterator)
            return x.to(device), c.to(device), r.to(device)
        return batch, windows.numel() * 4

    runs = []
    for model_name, feed in group["feeds"]:
        model = build(model_name, size, device)
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
        batch, input_bytes = feeder(feed)
        runs.append({"model": model_name, "feed": feed, "run": (model, optimizer, batch), "input_mb": input_bytes / 2**20,
                     "parameters": sum(p.numel() for p in model.parameters()), "seconds": []})

    def step(model, optimizer, batch) -> None:
        windows, classes, returns = batch()
        optimisation_step(model, optimizer, windows, classes, returns, config)

    for run in runs:  # warm-up
        for _ in range(2):
            step(*run["run"])
    for _ in range(size["rounds"]):
        for run in runs:
            if device.type == "cuda":
                torch.cuda.synchronize()
            started = time.perf_counter()
            for _ in range(size["steps"]):
                step(*run["run"])
            if device.type == "cuda":
                torch.cuda.synchronize()
            run["seconds"].append(time.perf_counter() - started)
    peak_mb = (torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda"
               else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    threads = f", {torch.get_num_threads()} thread{'s' * (torch.get_num_threads() > 1)}" if device.type == "cpu" else ""
    results.put([{"size": group["size"], "model": run["model"], "feed": run["feed"] + threads, "parameters": run["parameters"],
                  "samples_per_second": size["steps"] * BATCH / min(run["seconds"]), "seconds": run["seconds"],
                  "input_mb": run["input_mb"], "peak_mb": peak_mb}
                 for run in runs])


def run_group(group: dict) -> list[dict]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=measure, args=(group, results))
    process.start()
    rows = results.get()
    process.join()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="demo size only")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | mps")
    args = parser.parse_args()
    ours, ready, materialised = "gather on device", "batch already on device", "materialised DataLoader"
    rows = []
    for size in ["demo"] if args.quick else ["demo", "brief"]:
        for feeds in ([("transformer", ours), ("transformer", ready)], [("vanilla transformer", ours)],
                      [("tcn", ours), ("tcn", ready)], [("transformer", materialised)]):
            rows += run_group({"size": size, "device": args.device, "feeds": feeds})
        if resolve_device(args.device).type == "cpu":  # the demo trains with num_threads: 1
            rows += run_group({"size": size, "device": args.device, "feeds": [("transformer", ours)], "threads": 1})
    default_threads = rows[0]["feed"].removeprefix(ours)

    device = resolve_device(args.device)
    print(f"\nmachine: {platform.machine()}, {torch.get_num_threads()} threads, device {device}, "
          f"torch {torch.__version__}, python {sys.version.split()[0]}")
    print(f"table {N_ROWS:,} x {N_FEATURES} features, batch {BATCH}; demo: seq 32, transformer d32/4 heads/2 "
          "layers/ff64, TCN 32 ch x 3 blocks; brief: seq 64, transformer d128/8 heads/4 layers/ff512, "
          "TCN 128 ch x 4 blocks; dropout 0.1; best of several interleaved rounds\n")
    print("| size | model | feed | parameters | samples/s | vs ours | input data (MB) | process peak (MB) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: | ---: |")
    for row in rows:
        reference = "tcn" if row["model"] == "tcn" else "transformer"
        base = next(r for r in rows if r["size"] == row["size"] and r["model"] == reference
                    and r["feed"] == ours + default_threads)
        print(f"| {row['size']} | {row['model']} | {row['feed']} | {row['parameters']:,} | "
              f"{row['samples_per_second']:,.0f} | {row['samples_per_second'] / base['samples_per_second']:.2f}x | "
              f"{row['input_mb']:,.0f} | {row['peak_mb']:,.0f} |")
    print()
    for size in dict.fromkeys(row["size"] for row in rows):
        for model in ("transformer", "tcn"):
            gather, on_device = (next(r for r in rows if r["size"] == size and r["model"] == model
                                      and r["feed"] == feed + default_threads) for feed in (ours, ready))
            # Interference from other jobs only adds time: compare the best rounds; the median of the
            # paired (back-to-back) rounds is printed too.
            best = 1 - min(on_device["seconds"]) / min(gather["seconds"])
            paired = float(np.median([1 - ready_s / gather_s for gather_s, ready_s
                                      in zip(gather["seconds"], on_device["seconds"], strict=True)]))
            print(f"- input path, {size} {model}: {best:+.1%} of the step time, best rounds "
                  f"({paired:+.1%} median of {len(gather['seconds'])} paired rounds); limit 10 %")


if __name__ == "__main__":
    main()
