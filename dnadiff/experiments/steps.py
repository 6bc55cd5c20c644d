"""How many steps does a correct sequence need? Token vs sequence error of masked diffusion.

``python -m dnadiff.experiments.steps [--full] [--languages ...] [--lengths ...] [--archs ...]``

For checkable DNA languages (:mod:`dnadiff.data.languages`: a Markov chain fitted on hg38,
hairpins, open reading frames, a motif grammar) at lengths L, every sampler of
``dnadiff/experiments/steps.yaml`` generates sequences at T in {1, 2, 4, ..., 2L} steps (ancestral also at
4L and 32L), with

- the exact oracle: the language's true conditionals in place of the network (isolates the
  sampler's error), and
- small MDLM models (BiMamba, Caduceus-PS) trained on fresh language samples.

Metrics, per (source, language, L, sampler, T), over N generated sequences x_1..x_N:

- NFE: network calls per sequence (mean);
- SER (sequence error rate) = share of x_i with ``is_valid(x_i)`` false, with a Wilson 95% interval;
- TER (token error, nats/token) = mean over the valid x_i of -log p(x_i) / L under the exact
  language p (the cross-entropy of the valid samples), with its standard error, next to the
  language's entropy rate H = E_p[-log p(x)] / L (Monte Carlo over exact samples, with its
  standard error). TER - H is the excess; it is 0 for an exact sampler and may be slightly
  negative for one that under-samples rare sequences. (An invalid sequence has p = 0, so the
  NLL of all samples would be infinite: sequence errors are counted by SER, token errors by TER.)

Writes ``results.json`` (every row, the model reports and the target checks), PNG plots of SER
and TER against T per L (one per source) and of SER against NFE, under ``--out``
(default ``bench/results/steps``); after every sweep what is measured so far is saved in
``results.partial.json``, and ``--resume`` continues from it after a crash or a kill.
CPU-sized by default (about 20 minutes on 2 cores): the oracle on hairpins and ORFs at L = 64
and 256, the Markov background and the motif grammar at L = 64, and BiMamba and Caduceus-PS
trained on ORFs at L = 64 (the CPU time it took is in results.json). ``--full`` runs the
issue's grid: the oracle at L = 64, 128, 256, 512 on every language (the motif grammar, the
slowest, up to L = 128), and both architectures trained on the Markov background, hairpins and
ORFs at every L, sampled at T <= 64 (``--net-max-steps``); about two CPU-hours.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import OmegaConf

from dnadiff.atomic import atomic_write_text
from dnadiff.data.languages import LANGUAGES, Language, LanguageDenoiser, MarkovLanguage, build_language
from dnadiff.experiments.record import machine_info, write_results
from dnadiff.experiments.stats import Z95, interpolate_log, mean_se, wilson
from dnadiff.objectives.schedules import build_schedule
from dnadiff.resources import shared_data_dir
from dnadiff.sampling import MDLM_SAMPLERS, Denoiser, all_mask, make_generator
from dnadiff.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[2]
CONFIG = Path(__file__).with_name("steps.yaml")
TOK = Tokenizer()
SCHEDULE = build_schedule("loglinear")
DEFAULT = {"languages": list(LANGUAGES), "lengths": [64, 256], "motif_max_length": 64, "markov_max_length": 64,
           "archs": ["bimamba", "caduceus_ps"], "net_languages": ["orf"], "net_lengths": [64], "net_max_steps": None}
FULL = {"languages": list(LANGUAGES), "lengths": [64, 128, 256, 512], "motif_max_length": 128, "markov_max_length": 512,
        "archs": ["bimamba", "caduceus_ps"], "net_languages": ["markov", "hairpin", "orf"],
        "net_lengths": [64, 128, 256, 512], "net_max_steps": 64}


def steps_for(length: int, sampler: str, cfg: dict, language: str = "hairpin",
              max_steps: int | None = None) -> list[int]:
    """The T grid of one sampler at length L (``language``: ancestral's extra T), capped at ``max_steps``."""
    top = length if sampler in cfg["steps"]["bounded_by_length"] else int(cfg["steps"]["max_factor"]) * length
    grid = [2**k for k in range(int(math.log2(top)) + 1)]
    if grid[-1] != top:
        grid.append(top)
    if sampler == "ancestral":
        grid += [f * length for f in cfg["steps"]["ancestral_extra"].get(language, []) if f * length > grid[-1]]
    return grid if max_steps is None else [t for t in grid if t <= max_steps]


def sampler_fn(name: str, cfg: dict) -> Callable[..., Any]:
    """The sampler ``name`` of the config with its options bound."""
    spec = dict(cfg["samplers"][name])
    fn = MDLM_SAMPLERS[spec.pop("fn")]
    return lambda den, z, steps, generator: fn(den, z, steps, SCHEDULE, TOK.mask_id, generator=generator, **spec)



def generate(den: Callable, language: Language, length: int, run: Callable, steps: int, n: int, batch: int,
             seed: int) -> tuple[torch.Tensor, np.ndarray, float]:
    """n sequences (token ids), NFE per sequence, seconds."""
    gen = make_generator(seed, "cpu")
    ids, nfe = [], []
    start = time.perf_counter()
    for b0 in range(0, n, batch):
        out = run(den, all_mask(min(batch, n - b0), length, TOK.mask_id), steps, gen)
        ids.append(out.ids)
        nfe.append(out.nfe_per_sequence.numpy())
    return torch.cat(ids), np.concatenate(nfe), time.perf_counter() - start


def score(language: Language, x: torch.Tensor, entropy: tuple[float, float], min_valid: int) -> dict[str, Any]:
    """SER with its Wilson interval, TER (valid sequences) with its standard error, the excess over H."""
    length = x.shape[1]
    valid = language.is_valid(x)
    n, n_valid = int(valid.numel()), int(valid.sum())
    lo, hi = wilson(n - n_valid, n)
    row: dict[str, Any] = {"n": n, "n_valid": n_valid, "ser": 1 - n_valid / n, "ser_lo": lo, "ser_hi": hi,
                           "entropy_rate": entropy[0], "entropy_rate_se": entropy[1]}
    if n_valid >= min_valid:
        ter, ter_se = mean_se((-language.log_prob(x[valid]) / length).numpy())
        row.update(ter=ter, ter_se=ter_se, ter_excess=ter - entropy[0],
                   ter_excess_se=math.sqrt(ter_se**2 + entropy[1] ** 2))
    else:
        row.update(ter=None, ter_se=None, ter_excess=None, ter_excess_se=None)
    return row


def sweep(source: str, den_for: Callable[[], Callable], language: Language, length: int, cfg: dict,
          section: dict, samplers: list[str], entropy: tuple[float, float], seed: int,
          max_steps: int | None = None) -> list[dict]:
    """Every sampler at every T of its grid (up to ``max_steps``), for one (source, language, L)."""
    rows = []
    for name in samplers:
        run = sampler_fn(name, cfg)
        for steps in steps_for(length, name, cfg, language.name, max_steps):
            den = den_for()
            x, nfe, seconds = generate(den, language, length, run, steps, int(section["num_samples"]),
                                       int(section["batch_size"]), seed)
            row = {"source": source, "language": language.name, "length": length, "sampler": name, "steps": steps,
                   "nfe": float(nfe.mean()), "nfe_max": int(nfe.max()), "seconds": seconds,
                   **score(language, x, entropy, int(cfg["metrics"]["min_valid_for_ter"]))}
            if isinstance(den, LanguageDenoiser):
                row["fallback_rows"] = den.fallback_rows
            rows.append(row)
            ter = "-" if row["ter_excess"] is None else f"{row['ter_excess']:+.4f}"
            print(f"  {source:<11s} {language.name:<8s} L={length:<4d} {name:<18s} T={steps:<5d} "
                  f"NFE={row['nfe']:7.1f} SER={row['ser']:.3f} [{row['ser_lo']:.3f},{row['ser_hi']:.3f}] "
                  f"TER-H={ter} ({seconds:.1f}s)", flush=True)
    return rows


def min_nfe_reaching(rows: list[dict], target: float, upper: bool = False) -> float | None:
    """The smallest NFE at which SER (or its Wilson upper bound) is <= target, None if never."""
    key = "ser_hi" if upper else "ser"
    hits = [r["nfe"] for r in rows if r[key] <= target]
    return min(hits) if hits else None


def targets(rows: list[dict], cfg: dict) -> dict[str, Any]:
    """The issue's targets on hairpins and ORFs at the largest L, and the TER check against ancestral."""
    ser_target, tol = float(cfg["metrics"]["ser_target"]), float(cfg["metrics"]["ter_tolerance"])
    out: dict[str, Any] = {"ser": [], "ter": []}
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["source"], r["language"], r["length"]), []).append(r)
    for (source, lang, length), group in sorted(groups.items()):
        by = {}
        for r in group:
            by.setdefault(r["sampler"], []).append(r)
        if lang in ("hairpin", "orf"):
            entry = {"source": source, "language": lang, "length": length, "nfe_budget": length / 4,
                     "min_nfe_ser_le_target": {s: min_nfe_reaching(v, ser_target) for s, v in by.items()},
                     "min_nfe_ser_upper_le_target": {s: min_nfe_reaching(v, ser_target, True) for s, v in by.items()}}
            fast = {s: n for s, n in entry["min_nfe_ser_le_target"].items() if s != "ancestral" and n is not None}
            entry["met_by"] = sorted(s for s, n in fast.items() if n <= length / 4)
            entry["met"] = bool(entry["met_by"])
            out["ser"].append(entry)
        anc = sorted((r for r in by.get("ancestral", []) if r["ter"] is not None), key=lambda r: r["nfe"])
        if not anc:
            continue
        xs, ys, ses = [r["nfe"] for r in anc], [r["ter"] for r in anc], [r["ter_se"] for r in anc]
        for s, v in by.items():
            if s == "ancestral":
                continue
            worst = None
            for r in v:
                if r["ter"] is None or r["nfe"] < xs[0] or r["nfe"] > xs[-1]:
                    continue
                ref, ref_se = interpolate_log(r["nfe"], xs, ys), interpolate_log(r["nfe"], xs, ses)
                rel = (r["ter"] - ref) / ref
                rel_se = math.sqrt(r["ter_se"] ** 2 + ref_se**2) / ref
                if worst is None or rel > worst["relative_change"]:
                    worst = {"steps": r["steps"], "nfe": r["nfe"], "ter": r["ter"], "ter_se": r["ter_se"],
                             "ancestral_ter_at_nfe": ref, "relative_change": rel, "relative_change_se": rel_se}
            if worst is not None:
                out["ter"].append({
                    "source": source, "language": lang, "length": length, "sampler": s, "worst": worst,
                    "within_tolerance": worst["relative_change"] <= tol,
                    "exceeds_beyond_noise": worst["relative_change"] - Z95 * worst["relative_change_se"] > tol})
    return out


def theory(rows: list[dict], cfg: dict) -> dict[str, Any]:
    """Feng et al. 2025 checks: TER excess at fixed T across L, and the T ancestral needs for SER <= 1%."""
    ser_target = float(cfg["metrics"]["ser_target"])
    out: dict[str, Any] = {"ter_excess_at_fixed_T": {}, "ancestral_T_for_ser_target": {}}
    for r in rows:
        if r["sampler"] != "ancestral":
            continue
        key = f"{r['source']}/{r['language']}"
        if r["ter_excess"] is not None:
            out["ter_excess_at_fixed_T"].setdefault(key, {}).setdefault(str(r["steps"]), {})[str(r["length"])] = (
                r["ter_excess"], r["ter_excess_se"])
        if r["language"] != "markov":
            d = out["ancestral_T_for_ser_target"].setdefault(key, {})
            if r["ser"] <= ser_target and (str(r["length"]) not in d or r["steps"] < d[str(r["length"])]):
                d[str(r["length"])] = r["steps"]
    return out


def background_fasta() -> Path | None:
    """The shared hg38 slice when present (the same sequence as the embedded sample), else None (embedded)."""
    shared = shared_data_dir()
    path = shared / "genome" / "hg38_chr2_1-2000000.fa" if shared else None
    return path if path is not None and path.is_file() else None


DEFINITIONS = {
    "nfe": "network calls per sequence (mean over the generated sequences)",
    "ser": "share of generated sequences that violate the language's rule (is_valid false); Wilson 95% CI",
    "ter": "mean over the valid generated sequences of -log p(x)/L under the exact language, nats/token; SE",
    "entropy_rate": "H(p)/L = E_p[-log p(x)]/L by Monte Carlo over exact samples; SE",
    "ter_excess": "ter - entropy_rate",
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m dnadiff.experiments.steps",
                                     description=__doc__.split("\n\n")[0],
                                     epilog="Settings (samplers, model, training, sample counts): dnadiff/experiments/steps.yaml.")
    parser.add_argument("--full", action="store_true", help="the issue's full sweep (hours on a CPU)")
    parser.add_argument("--languages", nargs="+", choices=LANGUAGES, help="languages of the oracle sweep")
    parser.add_argument("--lengths", nargs="*", type=int, help="lengths L of the oracle sweep (none: no oracle sweep)")
    parser.add_argument("--motif-max-length", type=int, help="skip the motif grammar above this L (it is the slowest)")
    parser.add_argument("--markov-max-length", type=int, help="skip the Markov background above this L")
    parser.add_argument("--archs", nargs="*", choices=["bimamba", "caduceus_ps"], help="trained models (none: oracle only)")
    parser.add_argument("--net-languages", nargs="+", choices=LANGUAGES, help="languages the models are trained on")
    parser.add_argument("--net-lengths", nargs="+", type=int, help="lengths L of the trained models")
    parser.add_argument("--train-steps", type=int, help="training steps of each model (overrides network.train.steps)")
    parser.add_argument("--net-max-steps", type=int, help="cap the trained models' T grid (default: network.max_steps)")
    parser.add_argument("--samplers", nargs="+", help="sampler names of dnadiff/experiments/steps.yaml (default: all)")
    parser.add_argument("--config", type=Path, default=CONFIG, help="experiment settings (YAML)")
    parser.add_argument("--num-samples", type=int, help="generated sequences per point (overrides oracle.num_samples "
                        "and network.num_samples: 0/n invalid bounds SER below about 3.8/n)")
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run from --out's "
                        "results.partial.json (written after every sweep; same arguments needed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "steps")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from dnadiff.experiments.steps_plot import plot_all
    from dnadiff.experiments.steps_train import train_on_language

    args = parse_args(argv)
    plan = dict(FULL if args.full else DEFAULT)
    for key in plan:
        value = getattr(args, key)
        if value is not None:
            plan[key] = value
    cfg = OmegaConf.to_container(OmegaConf.load(args.config), resolve=True)
    if args.num_samples is not None:
        if args.num_samples < 1:
            raise SystemExit(f"--num-samples must be a positive integer, got {args.num_samples}")
        for section in ("oracle", "network"):
            cfg[section]["num_samples"] = args.num_samples
    if args.train_steps is not None:
        if args.train_steps < 1:
            raise SystemExit(f"--train-steps must be a positive integer, got {args.train_steps}")
        cfg["network"]["train"]["steps"] = args.train_steps
    if plan["net_max_steps"] is None:
        plan["net_max_steps"] = cfg["network"].get("max_steps")
    samplers = args.samplers or list(cfg["samplers"])
    net_samplers = args.samplers or list(cfg["network"].get("samplers") or cfg["samplers"])
    unknown = sorted((set(samplers) | set(net_samplers)) - set(cfg["samplers"]))
    if unknown:
        raise SystemExit(f"unknown sampler(s) {unknown}; {args.config} defines {list(cfg['samplers'])}")
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    fasta = background_fasta()
    background = MarkovLanguage.fit(fasta, order=int(cfg["background"]["order"]))
    languages = {name: build_language(name, background) for name in LANGUAGES}
    dtype = torch.float32 if cfg["oracle"]["float32"] else torch.float64
    entropies: dict[tuple[str, int], tuple[float, float]] = {}

    def entropy(name: str, length: int) -> tuple[float, float]:
        if (name, length) not in entropies:
            entropies[(name, length)] = languages[name].entropy_rate(
                length, int(cfg["metrics"]["entropy_samples"]), torch.Generator().manual_seed(args.seed + 99))
        return entropies[(name, length)]

    command = "python -m dnadiff.experiments.steps " + " ".join(argv if argv is not None else sys.argv[1:])
    args.out.mkdir(parents=True, exist_ok=True)
    partial = args.out / "results.partial.json"
    rows, models = resume_from(partial, plan, cfg) if args.resume else ([], [])
    done = {(r["source"], r["language"], r["length"]) for r in rows}

    def assemble(complete: bool) -> dict[str, Any]:
        lengths = sorted(set(plan["lengths"]) | {m["length"] for m in models}) or [min(plan["net_lengths"])]
        return {
            "command": command, "complete": complete,
            "machine": machine_info("cpu"), "seconds": time.perf_counter() - start, "plan": plan, "config": cfg,
            "background": {"order": background.order, "fitted_on": background.source},
            "languages": {name: languages[name].describe(max(lengths)) for name in LANGUAGES},
            "definitions": DEFINITIONS,
            "models": models, "rows": rows, "targets": targets(rows, cfg), "theory": theory(rows, cfg),
        }

    def checkpoint() -> None:
        """Everything measured so far, so that a crash or a kill loses at most the sweep under way."""
        atomic_write_text(json.dumps(assemble(False), indent=1, default=float), partial)

    print(f"oracle sweep: languages {plan['languages']}, L {plan['lengths']}, samplers {samplers}", flush=True)
    for length in plan["lengths"]:
        for name in plan["languages"]:
            lang = languages[name]
            cap = {"motifs": plan["motif_max_length"], "markov": plan["markov_max_length"]}.get(name, length)
            if length > cap or length < lang.min_length or ("oracle", name, length) in done:
                continue
            rows += sweep("oracle", lambda lang=lang: LanguageDenoiser(lang, dtype=dtype), lang, length, cfg,
                          cfg["oracle"], samplers, entropy(name, length), args.seed)
            checkpoint()
    for arch in plan["archs"] or []:
        for length in plan["net_lengths"]:
            for name in plan["net_languages"]:
                if (arch, name, length) in done:
                    continue
                lang = languages[name]
                print(f"training {arch} on {name} at L={length}", flush=True)
                model, report = train_on_language(lang, length, arch, cfg["network"], args.seed)
                report.update(language=name, length=length, entropy_rate=entropy(name, length)[0],
                              entropy_rate_se=entropy(name, length)[1])
                print(f"  held-out NELBO {report['heldout_nelbo']:.4f} +- {report['heldout_nelbo_se']:.4f} "
                      f"nats/token vs entropy rate {report['entropy_rate']:.4f}", flush=True)
                rows += sweep(arch, lambda model=model: Denoiser(model, TOK.mask_id), lang, length, cfg,
                              cfg["network"], net_samplers, entropy(name, length), args.seed, plan["net_max_steps"])
                models.append(report)
                checkpoint()
    result = assemble(True)
    write_results(result, args.out / "results")
    partial.unlink(missing_ok=True)
    figures = plot_all(result, args.out)
    print_summary(result)
    print(f"wrote {args.out / 'results.json'} and {', '.join(str(f) for f in figures)} "
          f"in {result['seconds'] / 60:.1f} min", flush=True)
    return result


def resume_from(partial: Path, plan: dict, cfg: dict) -> tuple[list[dict], list[dict]]:
    """Rows and model reports of an interrupted run with the same plan and settings ([] without one)."""
    if not partial.is_file():
        print(f"--resume: no {partial}; starting afresh", flush=True)
        return [], []
    try:
        saved = json.loads(partial.read_text())
    except json.JSONDecodeError as err:
        raise SystemExit(f"--resume: {partial} is not valid JSON ({err}); delete it to start afresh") from err
    for key, ours in (("plan", plan), ("config", cfg)):
        if json.loads(json.dumps(ours)) != saved.get(key):
            raise SystemExit(f"--resume: {partial} was written with another {key}; rerun with the same "
                             f"arguments and {key}, or delete it to start afresh")
    print(f"--resume: {len(saved['rows'])} rows and {len(saved['models'])} trained models from {partial}", flush=True)
    return saved["rows"], saved["models"]


def print_summary(result: dict) -> None:
    """The target checks, as a short table."""
    print("\nSER target (SER <= 1% within L/4 network calls), min NFE reaching SER <= 1% per sampler:")
    for e in result["targets"]["ser"]:
        cells = "  ".join(f"{s}={'-' if n is None else f'{n:.0f}'}" for s, n in e["min_nfe_ser_le_target"].items())
        print(f"  {e['source']:<11s} {e['language']:<8s} L={e['length']:<4d} budget {e['nfe_budget']:.0f}: {cells}"
              f"  -> {'met by ' + ', '.join(e['met_by']) if e['met'] else 'not met'}")
    print("TER check (worst relative change vs ancestral at equal NFE +- 1 SE; tolerance 2%):")
    for e in result["targets"]["ter"]:
        w = e["worst"]
        flag = "" if e["within_tolerance"] else ("  EXCEEDS" if e["exceeds_beyond_noise"] else "  above 2% (within noise)")
        print(f"  {e['source']:<11s} {e['language']:<8s} L={e['length']:<4d} {e['sampler']:<18s} "
              f"{100 * w['relative_change']:+.2f}% +- {100 * w['relative_change_se']:.2f}% at T={w['steps']} "
              f"(NFE {w['nfe']:.0f}){flag}")


if __name__ == "__main__":
    main()
