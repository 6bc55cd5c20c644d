"""Throughput of the pretraining data path (genome -> windows -> token ids), issue 3.

Measures windows/s and tokens/s of the training loader (``GenomeWindows`` with random shift,
RC augmentation and the N filter, through a torch DataLoader) on the real hg38 chr2 sample,
for 0 and 2 workers, plain and bgzip FASTA, L = 1024 and L = 131072 (the 2 Mb sample holds
only 15 training windows of 131072 bp, so the loader cycles over them). The reference,
measured in the same run: a naive loader that parses the whole FASTA with Biopython SeqIO,
slices windows in Python and encodes them character by character (its one-off parse time is
reported separately). Every loader figure is also given as a ratio to that reference at the
same L.

It also measures the tokens/s that training consumes: forward + cross-entropy + backward of
``dnadiff.build_model("caduceus_ps")`` on batches of the default data config
(configs/data/genome.yaml), and reports loader tokens/s / consumed tokens/s (target >= 10).

    python bench/loader.py [--quick] [--out bench/results/loader.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from Bio import SeqIO
from torch.utils.data import DataLoader

from dnadiff.cli import load_config
from dnadiff.data.datamodule import PretrainDataModule
from dnadiff.data.genome import Genome
from dnadiff.experiments.record import machine_info, write_results
from dnadiff.data.windows import GenomeWindows, collate_windows, intervals_from_blocks
from dnadiff.resources import shared_data_dir, shared_data_missing_reason
from dnadiff.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
# (seq_len, batch_size, split_block, windows to time)
LENGTHS = {1024: (32, 100_000, 4096), 131072: (2, 262_144, 96)}


def time_loader(
    fasta: Path, seq_len: int, batch: int, split_block: int, n_windows: int, workers: int, numpy_collate: bool = True
) -> dict:
    """Windows/s of the training loader, wall time from iterator creation (worker start-up
    included) until ``n_windows`` windows have arrived, cycling epochs as needed."""
    genome = Genome(fasta)
    ivs = [iv for iv in intervals_from_blocks(genome, split_block) if iv.split == "train"]
    ds = GenomeWindows(genome, ivs, seq_len, train=True, rc_aug=True, shift=True, max_n_frac=0.1, seed=0)
    loader = DataLoader(
        ds, batch_size=batch, shuffle=True, num_workers=workers, persistent_workers=workers > 0,
        generator=torch.Generator().manual_seed(0), collate_fn=collate_windows if numpy_collate else None,
    )
    t0 = time.perf_counter()
    first = None
    done = 0
    while done < n_windows:
        for b in loader:
            if first is None:
                first = time.perf_counter() - t0
            done += len(b["input_ids"])
            if done >= n_windows:
                break
    dt = time.perf_counter() - t0
    return {"windows": done, "seconds": dt, "windows_per_s": done / dt, "tokens_per_s": done * seq_len / dt,
            "first_batch_s": first, "train_windows_in_epoch": len(ds),
            "collate": "collate_windows (numpy)" if numpy_collate else "torch default_collate"}


def naive_reference(fasta: Path, seq_len: int, n_windows: int, seed: int = 0) -> dict:
    """Biopython parse of the whole FASTA, Python slicing, per-character encoding and RC."""
    tok = Tokenizer()
    vocab = tok.token_to_id
    comp = {"A": "T", "C": "G", "G": "C", "T": "A", "N": "N"}
    t = time.perf_counter()
    opener = gzip.open if str(fasta).endswith(".gz") else open
    with opener(fasta, "rt") as handle:
        seqs = {rec.id: str(rec.seq) for rec in SeqIO.parse(handle, "fasta")}
    parse_s = time.perf_counter() - t
    seq = seqs["chr2"]
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    for _ in range(n_windows):
        start = int(rng.integers(10_000, len(seq) - seq_len))
        window = seq[start : start + seq_len].upper()
        if rng.random() < 0.5:
            window = "".join(comp.get(c, "N") for c in reversed(window))
        ids = torch.tensor([vocab.get(c, tok.n_id) for c in window], dtype=torch.long)
    dt = time.perf_counter() - t
    assert ids.shape == (seq_len,)
    return {"windows": n_windows, "seconds": dt, "windows_per_s": n_windows / dt,
            "tokens_per_s": n_windows * seq_len / dt, "parse_s": parse_s}


def model_consumption(data_cfg: dict, repeats: int) -> dict:
    """Tokens/s consumed by fwd + bwd of the default model on default-config batches.

    Timed with 1 torch thread and with the default thread count; the ratio uses the faster
    (the conservative choice for loader / consumption). On a loaded 2-core machine the
    default (2 intra-op threads) was about 10x slower than 1 thread.
    """
    try:
        import dnadiff

        model = dnadiff.build_model("caduceus_ps")
    except Exception as err:  # the model is another module's; report why it is missing
        return {"available": False, "why": f"{type(err).__name__}: {err}"}
    dm = PretrainDataModule({**data_cfg, "num_workers": 0}, seed=0, max_steps=repeats + 2)
    batches = iter(dm.train_dataloader())
    model.train()
    default_threads = torch.get_num_threads()
    per_threads = {}
    for threads in sorted({1, default_threads}):
        torch.set_num_threads(threads)
        times = []
        for r in range(repeats + 1):
            ids = next(batches)["input_ids"]
            t = time.perf_counter()
            logits = model(ids)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), ids.reshape(-1))
            loss.backward()
            model.zero_grad(set_to_none=True)
            if r:
                times.append(time.perf_counter() - t)
        step = float(np.median(times))
        per_threads[threads] = {"step_s": step, "tokens_per_s": ids.numel() / step}
    torch.set_num_threads(default_threads)
    best = max(per_threads.values(), key=lambda x: x["tokens_per_s"])
    return {"available": True, "params": sum(p.numel() for p in model.parameters()), "batch": list(ids.shape),
            "by_torch_threads": {str(k): v for k, v in per_threads.items()}, **best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=RESULTS / "loader.json")
    parser.add_argument("--quick", action="store_true", help="a quarter of the windows (smoke run)")
    parser.add_argument("--model-repeats", type=int, default=3)
    args = parser.parse_args()
    shared = shared_data_dir()
    if shared is None:
        raise SystemExit(shared_data_missing_reason())
    fastas = {"plain": shared / "genome" / "hg38_chr2_1-2000000.fa", "bgzip": shared / "genome" / "hg38_chr2_1-2000000.fa.gz"}
    scale = 4 if args.quick else 1

    rows = []
    refs = {}
    for seq_len, (batch, block, n_win) in LENGTHS.items():
        n_win = max(n_win // scale, 2 * batch)
        refs[seq_len] = naive_reference(fastas["plain"], seq_len, n_win)
        rows.append({"loader": "naive SeqIO (reference)", "fasta": "plain", "seq_len": seq_len, "workers": 0,
                     **refs[seq_len], "ratio": 1.0})
        for name, fasta in fastas.items():
            for workers in (0, 2):
                r = time_loader(fasta, seq_len, batch, block, n_win, workers)
                rows.append({"loader": "GenomeWindows", "fasta": name, "seq_len": seq_len, "workers": workers,
                             **r, "ratio": r["windows_per_s"] / refs[seq_len]["windows_per_s"]})
        r = time_loader(fastas["plain"], seq_len, batch, block, n_win, 0, numpy_collate=False)
        rows.append({"loader": "GenomeWindows+torch collate", "fasta": "plain", "seq_len": seq_len, "workers": 0,
                     **r, "ratio": r["windows_per_s"] / refs[seq_len]["windows_per_s"]})

    data_cfg = dataclasses.asdict(load_config("pretrain").data)
    default_loader = time_loader(
        Genome(PretrainDataModule(data_cfg, seed=0, max_steps=1).source.fasta).path, data_cfg["seq_len"],
        data_cfg["batch_size"],
        data_cfg["split_block"], max(1024 // scale, 4 * data_cfg["batch_size"]), 0,
    )
    consumption = model_consumption(data_cfg, args.model_repeats)
    ratio = (default_loader["tokens_per_s"] / consumption["tokens_per_s"]) if consumption.get("available") else None

    print(f"{'loader':28s} {'fasta':6s} {'L':>7s} {'wk':>3s} {'windows/s':>10s} {'Mtok/s':>8s} {'x naive':>8s}")
    for r in rows:
        print(f"{r['loader']:28s} {r['fasta']:6s} {r['seq_len']:7d} {r['workers']:3d} {r['windows_per_s']:10.1f} "
              f"{r['tokens_per_s'] / 1e6:8.2f} {r['ratio']:8.1f}")
    for seq_len, ref in refs.items():
        print(f"naive reference one-off SeqIO parse of the 2 Mb FASTA: {ref['parse_s']:.2f} s (L={seq_len} run)")
    print(f"default data config (L={data_cfg['seq_len']}, batch {data_cfg['batch_size']}, embedded bgzip, 0 workers): "
          f"{default_loader['tokens_per_s'] / 1e6:.2f} Mtok/s")
    if consumption.get("available"):
        print(f"caduceus_ps fwd+bwd ({consumption['params']:,} params, batch {consumption['batch']}): "
              f"{consumption['tokens_per_s'] / 1e3:.1f} ktok/s -> loader / consumption = {ratio:.0f}x (target >= 10x)")
    else:
        print(f"model consumption not measured: {consumption['why']}")

    write_results({
        "bench": "loader",
        "command": "python bench/loader.py" + (" --quick" if args.quick else ""),
        "machine": machine_info("cpu"),
        "reference": "naive: Biopython SeqIO parse of the whole plain FASTA, Python slice, per-character encode (same L)",
        "rows": rows,
        "default_config_loader": {"data_config": "configs/data/genome.yaml", **default_loader},
        "model_consumption": consumption,
        "loader_over_consumption": ratio,
        "target_loader_over_consumption": 10.0,
    }, args.out.with_suffix(""))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
