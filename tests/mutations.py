"""Mutation check: deliberate bugs that the test suite must catch.

    python -m tests.mutations [--only ID ...] [--list] [--out bench/results/mutations.json]

Each mutation replaces exact snippets of one source file. The check copies the package and the
tests into a temporary directory (the working tree is never edited), runs the mutation's tests
there unmutated (they must pass), then applies each mutation to a fresh copy and runs its tests
again (at least one must fail, by an assertion, not by an import or collection error). A snippet
that is not found exactly the expected number of times stops the check with an error naming the
mutation and the file: the code it targets has changed and the mutation must be updated
(``tests/test_mutations.py`` checks this in the normal suite). Results, per mutation the tests
that failed, go to ``bench/results/mutations.json``; the exit status is 1 when a mutation
survives or the unmutated tests fail.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from dnadiff.atomic import atomic_write_text
from dnadiff.resources import SHARED_DATA_ENV, shared_data_dir

REPO = Path(__file__).resolve().parents[1]
COPIED = ("dnadiff", "tests", "pyproject.toml", "configs")
DEFAULT_OUT = REPO / "bench" / "results" / "mutations.json"


class MutationError(RuntimeError):
    """A mutation no longer applies to the code (its snippet is missing or ambiguous)."""


@dataclass(frozen=True)
class Mutation:
    """A named bug: in ``path``, each ``old`` snippet (found exactly ``count`` times) becomes ``new``."""

    id: str
    description: str
    path: str
    replacements: tuple[tuple[str, str], ...]
    tests: tuple[str, ...]
    count: int = 1

    def apply(self, text: str) -> str:
        for old, new in self.replacements:
            found = text.count(old)
            if found != self.count:
                raise MutationError(f"mutation {self.id!r}: expected {self.count} occurrence(s) of {old!r} in "
                                    f"{self.path}, found {found}; the code changed: update tests/mutations.py")
            text = text.replace(old, new)
        return text


EXACT_CHAIN = "tests/sampling/test_exact_chain.py"
STREAM = "tests/data/test_stream.py"
MDLM_EVAL = ("tests/objectives/test_mdlm.py::test_eval_batch_averages_each_draws_own_noise",
             "tests/objectives/test_mdlm.py::test_evaluation_bound_matches_exact_expectation")
MDLM_PRIOR = "tests/objectives/test_mdlm.py::test_prior_term_is_alpha_1_times_all_mask_cross_entropy"
EVAL_TESTS = "tests/metrics/test_evaluation.py"

MUTATIONS: tuple[Mutation, ...] = (
    Mutation(
        "a_sampler_all_mask_input",
        "the samplers feed the network the all-mask sequence instead of the partly unmasked z",
        "dnadiff/sampling/calls.py",
        (("fresh = self.denoiser(z, t, None) if rows.numel() == batch else self.denoiser(z[rows], t, rows)",
          "fresh = self.denoiser(torch.full_like(z, MASK_ID), t, None) if rows.numel() == batch "
          "else self.denoiser(torch.full_like(z[rows], MASK_ID), t, rows)"),
         ("import torch\n", "import torch\n\nfrom dnadiff.tokenizer import Tokenizer\n\nMASK_ID = Tokenizer().mask_id\n")),
        (EXACT_CHAIN,),
    ),
    Mutation(
        "b_cache_never_refreshed",
        "the cached sampler never refreshes x_theta after its first call",
        "dnadiff/sampling/calls.py",
        (("self.stale |= rows", "self.stale |= torch.zeros_like(rows)"),),
        (EXACT_CHAIN,),
    ),
    Mutation(
        "c_stream_iid_times",
        "the training stream draws i.i.d. times instead of stratified (antithetic) ones",
        "dnadiff/data/stream.py",
        (("        if self.antithetic:\n            return float(stratified(",
          "        if False:\n            return float(stratified("),),
        (STREAM,),
    ),
    Mutation(
        "d_eval_draws_share_t",
        "all evaluation draws of a window share one time",
        "dnadiff/data/stream.py",
        (("t_u = stratified(rng.random(), np.arange(self.draws), self.draws)",
          "t_u = np.full(self.draws, rng.random())"),),
        (STREAM,),
    ),
    Mutation(
        "d2_eval_batch_one_t",
        "eval_batch evaluates every draw of a window at the first draw's time",
        "dnadiff/objectives/mdlm.py",
        (("self._weighted(model, x, t_all[:, k], (1.0 - self.t_min) * self.schedule.weight(t_all[:, k]), cond,",
          "self._weighted(model, x, t_all[:, 0], (1.0 - self.t_min) * self.schedule.weight(t_all[:, 0]), cond,"),),
        MDLM_EVAL,
    ),
    Mutation(
        "e_eval_batch_sums_draws",
        "eval_batch sums over the draws instead of averaging",
        "dnadiff/objectives/mdlm.py",
        (("per_seq = per_draw.mean(1)", "per_seq = per_draw.sum(1)"),),
        MDLM_EVAL,
    ),
    Mutation(
        "f_evaluate_one_draw",
        "evaluate uses one draw per window whatever eval.draws says",
        "dnadiff/metrics/evaluation.py",
        (("EvalNoiseDataset(dataset, cfg.eval.seed, cfg.eval.draws)", "EvalNoiseDataset(dataset, cfg.eval.seed, 1)"),),
        (EVAL_TESTS,),
    ),
    Mutation(
        "f2_eval_noise_one_draw",
        "the evaluation noise holds one draw per window whatever it is asked for",
        "dnadiff/data/stream.py",
        (("        self.draws = int(draws)\n", "        self.draws = 1\n"),),
        (STREAM, EVAL_TESTS),
    ),
    Mutation(
        "g_evaluate_raw_weights",
        "evaluate loads the raw weights instead of the EMA",
        "dnadiff/metrics/evaluation.py",
        (("load_model(ckpt, use_ema=cfg.use_ema)", "load_model(ckpt, use_ema=False)"),),
        (EVAL_TESTS,),
    ),
    Mutation(
        "h_prior_term_dropped",
        "the bound leaves out the prior term KL(q(z_1|x) || p_theta(z_1))",
        "dnadiff/objectives/mdlm.py",
        (("return a_1 * self.position_loss(logits, x, z).sum(-1)",
          "return 0.0 * a_1 * self.position_loss(logits, x, z).sum(-1)"),),
        (*MDLM_EVAL, MDLM_PRIOR, EVAL_TESTS),
    ),
    Mutation(
        "i_reconstruction_dropped",
        "the bound leaves out the reconstruction term",
        "dnadiff/objectives/mdlm.py",
        (("            out[rows] = self.position_loss(logits, x[rows], z[rows]).sum(-1)\n",
          "            out[rows] = 0.0 * self.position_loss(logits, x[rows], z[rows]).sum(-1)\n"),),
        MDLM_EVAL,
    ),
    Mutation(
        "j_stderr_not_clustered",
        "the standard error treats every draw as an independent window",
        "dnadiff/metrics/likelihood.py",
        (("        y, n = self.per_window()\n        ratio = y.sum() / n.sum()",
          "        y, n = torch.cat(self._draws).flatten(), torch.cat(self._tokens).repeat_interleave("
          "self._draws[0].shape[1]) if self._draws else self.per_window()\n        ratio = y.sum() / n.sum()"),),
        (EVAL_TESTS,),
    ),
)


def check_applies(mutations: tuple[Mutation, ...] = MUTATIONS, root: Path = REPO) -> None:
    """Raise MutationError unless every mutation's snippets are found in ``root`` as expected."""
    for m in mutations:
        m.apply((root / m.path).read_text())


def copy_tree(dest: Path) -> None:
    """The package and the tests (no caches) into ``dest``."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", ".pytest_cache")
    for name in COPIED:
        src = REPO / name
        if src.is_symlink():
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore, symlinks=True)
        elif src.exists():
            shutil.copy2(src, dest / name)


@dataclass
class Outcome:
    returncode: int
    failed: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    passed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    tail: str = ""


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> Outcome:
    """pytest on ``tests`` in ``root`` (which must import its own copy of dnadiff)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)
    shared = shared_data_dir()  # the copy is not beside shared/data: point it there
    if shared is not None:
        env[SHARED_DATA_ENV] = str(shared)
    where = subprocess.run([sys.executable, "-c", "import dnadiff; print(dnadiff.__file__)"], cwd=root, env=env,
                           capture_output=True, text=True, check=True).stdout.strip()
    if not Path(where).resolve().is_relative_to(root.resolve()):
        raise RuntimeError(f"the copy in {root} imports dnadiff from {where}, not from the copy")
    start = time.time()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--tb=line", "-rfE",
                           *tests], cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    out = proc.stdout + proc.stderr
    failed = sorted(set(re.findall(r"^FAILED (\S+)", out, flags=re.M)))
    errors = sorted(set(re.findall(r"^ERROR (\S+)", out, flags=re.M)))
    passed, skipped = (re.search(rf"(\d+) {word}", out) for word in ("passed", "skipped"))
    return Outcome(proc.returncode, failed, errors, int(passed.group(1)) if passed else 0,
                   int(skipped.group(1)) if skipped else 0, round(time.time() - start, 1), out[-1500:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.mutations", description=__doc__.split("\n\n")[0],
                                 epilog="Mutations: " + ", ".join(m.id for m in MUTATIONS))
    ap.add_argument("--only", nargs="+", metavar="ID", help="run these mutations only")
    ap.add_argument("--list", action="store_true", help="list the mutations and their tests, then exit")
    ap.add_argument("--out", default=str(DEFAULT_OUT), help="results JSON (default bench/results/mutations.json)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds per pytest run")
    args = ap.parse_args(argv)
    chosen = MUTATIONS
    if args.only:
        unknown = sorted(set(args.only) - {m.id for m in MUTATIONS})
        if unknown:
            ap.error(f"unknown mutation(s) {unknown}; valid: {[m.id for m in MUTATIONS]}")
        chosen = tuple(m for m in MUTATIONS if m.id in args.only)
    if args.list:
        for m in chosen:
            print(f"{m.id}: {m.description} ({m.path}) -> {' '.join(m.tests)}")
        return 0
    try:
        check_applies(chosen)
    except MutationError as err:
        print(f"mutations: {err}", file=sys.stderr)
        return 2
    all_tests = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
    results: dict[str, object] = {"command": "python -m tests.mutations " + " ".join(argv or sys.argv[1:]),
                                  "python": sys.version.split()[0]}
    ok = True
    with tempfile.TemporaryDirectory(prefix="dnadiff_mutations_") as tmp:
        base = Path(tmp) / "unmutated"
        base.mkdir()
        copy_tree(base)
        outcome = run_tests(base, all_tests, args.timeout)
        baseline_ok = (outcome.returncode == 0 and not outcome.failed and not outcome.errors
                       and not outcome.skipped)
        ok &= baseline_ok
        results["unmutated"] = {"tests": list(all_tests), "passed": outcome.passed, "failed": outcome.failed,
                                "errors": outcome.errors, "skipped": outcome.skipped, "seconds": outcome.seconds,
                                "ok": baseline_ok}
        print(f"unmutated: {outcome.passed} passed, {len(outcome.failed)} failed, {len(outcome.errors)} errors, "
              f"{outcome.skipped} skipped ({outcome.seconds:.0f} s){'' if baseline_ok else ' <- must all pass'}",
              flush=True)
        if not baseline_ok:
            print(outcome.tail, file=sys.stderr)
        rows = []
        for m in chosen:
            root = Path(tmp) / m.id
            root.mkdir()
            copy_tree(root)
            target = root / m.path
            target.write_text(m.apply(target.read_text()))
            outcome = run_tests(root, m.tests, args.timeout)
            killed = bool(outcome.failed) and not outcome.errors
            ok &= killed
            rows.append({"id": m.id, "description": m.description, "file": m.path, "tests": list(m.tests),
                         "killed": killed, "failed": outcome.failed, "errors": outcome.errors,
                         "passed": outcome.passed, "seconds": outcome.seconds})
            print(f"{m.id}: {'killed' if killed else 'SURVIVED'} by {len(outcome.failed)} failing test(s), "
                  f"{outcome.passed} passed ({outcome.seconds:.0f} s)", flush=True)
            if not killed:
                print(outcome.tail, file=sys.stderr)
            shutil.rmtree(root)
        results["mutations"] = rows
    results["all_killed"] = all(r["killed"] for r in rows)
    results["ok"] = ok
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(json.dumps(results, indent=1) + "\n", out)
    print(f"{sum(r['killed'] for r in rows)}/{len(rows)} mutations killed -> {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
