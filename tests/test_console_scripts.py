"""The installed package: a wheel built from this checkout holds every config YAML and data file,
and each ``dnadiff-*`` console script of pyproject.toml runs from it (``--help`` and a real call),
as does ``python -m`` of each entry point; Hydra finds ``pkg://dnadiff.configs`` from the wheel and
from an editable install; ``dir(dnadiff)`` lists the public API.

The wheel is built without network (``pip wheel --no-deps``, with the environment's setuptools
when it is recent enough) and installed with ``pip install --no-deps --target DIR``; the scripts
then run from a folder outside the checkout with only DIR on PYTHONPATH, so ``import dnadiff``
can only be the wheel's copy (the test checks that it is).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import dnadiff

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 300


def project_scripts() -> dict[str, str]:
    """``[project.scripts]`` of pyproject.toml: script name -> ``module:function``."""
    text = (REPO / "pyproject.toml").read_text()
    try:
        import tomllib

        return dict(tomllib.loads(text)["project"]["scripts"])
    except ImportError:  # Python 3.10: the section is simple `name = "module:function"` lines
        section = text.split("[project.scripts]", 1)[1].split("\n[", 1)[0]
        return dict(re.findall(r'^\s*([\w-]+)\s*=\s*"([^"]+)"', section, flags=re.M))


def package_files() -> list[str]:
    """Files of the ``dnadiff`` package in this checkout (tracked or not ignored), relative to the repo."""
    if shutil.which("git") and (REPO / ".git").exists():
        out = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "dnadiff"],
                             cwd=REPO, capture_output=True, check=True).stdout.decode()
        files = [f for f in out.split("\0") if f]
    else:
        files = [str(p.relative_to(REPO)) for p in (REPO / "dnadiff").rglob("*") if p.is_file()]
    return sorted(f for f in files if (REPO / f).is_file() and "__pycache__" not in f and not f.endswith(".pyc"))


def _setuptools_ok() -> bool:
    try:
        import setuptools

        return int(setuptools.__version__.split(".")[0]) >= 68
    except ImportError:
        return False


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel of this checkout, built from a copy of its package files (the checkout stays clean)."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    for rel in ["pyproject.toml", "README.md", *package_files()]:
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / rel, src / rel)
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(work / "dist"), str(src)]
    if _setuptools_ok():
        cmd.insert(4, "--no-build-isolation")  # no download: build with the environment's setuptools
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}"
    (built,) = (work / "dist").glob("dnadiff-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory) -> dict[str, Path]:
    """The wheel installed without dependencies into a folder: {"site": folder, "bin": its scripts, "cwd": ...}."""
    site = tmp_path_factory.mktemp("site")
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet",
                           "--target", str(site), str(wheel)], capture_output=True, text=True, timeout=TIMEOUT_S)
    assert proc.returncode == 0, proc.stderr[-3000:]
    cwd = tmp_path_factory.mktemp("outside")
    return {"site": site, "bin": site / "bin", "cwd": cwd}


def run_in(installed: dict[str, Path], args: list[str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env.update(PYTHONPATH=str(installed["site"]), OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run(args, cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=TIMEOUT_S)


def run_all(installed: dict[str, Path], commands: list[list[str]]) -> list[subprocess.CompletedProcess]:
    """Independent commands, two at a time (each is mostly the start-up of torch)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda args: run_in(installed, args), commands))


def script(installed: dict[str, Path], name: str, *overrides: str) -> subprocess.CompletedProcess:
    proc = run_in(installed, [str(installed["bin"] / name), *overrides])
    assert proc.returncode == 0, f"{name} {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}"
    return proc


def test_dir_lists_the_public_api() -> None:
    names = dir(dnadiff)
    for name in ("build_model", "load_model", "Tokenizer", "__version__"):
        assert name in names, name
    assert set(dnadiff.__all__) <= set(names)
    assert callable(dnadiff.build_model) and callable(dnadiff.load_model)
    lazy = subprocess.run([sys.executable, "-c", "import dnadiff, sys; dir(dnadiff); "
                           "print('dnadiff.models.registry' in sys.modules)"],
                          cwd=REPO, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert lazy.stdout.strip() == "False", "dir(dnadiff) should not import the model registry"


def test_wheel_holds_every_config_and_data_file(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        entry_points = zf.read(next(n for n in names if n.endswith(".dist-info/entry_points.txt"))).decode()
    wanted = set(package_files())
    assert {f for f in wanted if f.endswith(".yaml")} and "dnadiff/configs/__init__.py" in wanted
    missing = sorted(wanted - names)
    assert not missing, f"the wheel lacks {missing} (pyproject.toml [tool.setuptools.package-data])"
    for name, target in project_scripts().items():
        assert f"{name} = {target}" in entry_points


def test_hydra_finds_every_config_in_the_wheel(installed: dict[str, Path]) -> None:
    """Every primary config and every option of every config group composes from the installed copy."""
    check = (
        "import dnadiff, importlib.resources as r\n"
        "from dnadiff.cli import compose_config\n"
        "root = r.files('dnadiff.configs')\n"
        "print(dnadiff.__file__)\n"
        "groups = {g.name: sorted(p.name[:-5] for p in g.iterdir() if p.name.endswith('.yaml'))\n"
        "          for g in root.iterdir() if g.is_dir() and not g.name.startswith('__')}\n"
        "n = 0\n"
        "for job in sorted(p.name[:-5] for p in root.iterdir() if p.name.endswith('.yaml')):\n"
        "    compose_config(job)\n"
        "    n += 1\n"
        "for group, options in groups.items():\n"
        "    for option in options:\n"
        "        compose_config('pretrain', [f'{group}={option}'])\n"
        "        n += 1\n"
        "print(n)\n"
    )
    proc = run_in(installed, [sys.executable, "-c", check])
    assert proc.returncode == 0, proc.stderr[-3000:]
    where, count = proc.stdout.split()
    assert Path(where).resolve().is_relative_to(installed["site"].resolve()), f"imported {where}, not the wheel"
    yamls = [f for f in package_files() if f.startswith("dnadiff/configs/") and f.endswith(".yaml")]
    assert int(count) == len(yamls)


def test_every_console_script_runs_from_the_wheel(installed: dict[str, Path], tmp_path: Path) -> None:
    scripts = project_scripts()
    assert {f"dnadiff-{n}" for n in ("pretrain", "evaluate", "export", "finetune", "generate",
                                     "evaluate-samples")} <= set(scripts)
    for name, proc in zip(scripts, run_all(installed, [[str(installed["bin"] / n), "--help"] for n in scripts])):
        assert proc.returncode == 0, f"{name} --help failed:\n{proc.stderr[-2000:]}"
        assert "== Config ==" in proc.stdout and "Powered by Hydra" in proc.stdout, name
    tiny = ["data.seq_len=64", "data.batch_size=4", "data.max_eval_windows=8", "data.eval_batch_size=8",
            "model.d_model=16", "model.n_layer=1", "model.scan_backend=torch", "eval.draws=1"]
    run_dir = tmp_path / "run"
    proc = script(installed, "dnadiff-pretrain", f"out_dir={run_dir}", "trainer.max_steps=2",
                  "trainer.enable_progress_bar=false", *tiny)
    assert "bits/base" in proc.stdout and (run_dir / "last.ckpt").is_file()
    script(installed, "dnadiff-evaluate", f"ckpt={run_dir / 'last.ckpt'}", "data.max_eval_windows=8", "eval.draws=1",
           f"out={tmp_path / 'eval.json'}")
    assert '"bits_per_base"' in (tmp_path / "eval.json").read_text()
    script(installed, "dnadiff-export", f"ckpt={run_dir / 'last.ckpt'}", f"out={tmp_path / 'export'}")
    assert (tmp_path / "export" / "model.safetensors").is_file()
    script(installed, "dnadiff-generate", f"ckpt={tmp_path / 'export'}", "num_samples=4", "length=64", "steps=8",
           f"out={tmp_path / 'samples.fa'}", "device=cpu")
    assert (tmp_path / "samples.fa").read_text().count(">") == 4
    script(installed, "dnadiff-evaluate-samples", f"samples={tmp_path / 'samples.fa'}", f"out={tmp_path / 'q.json'}",
           "reference.max_sequences=50", "plots=false", "metrics.motifs=false", "device=cpu")
    assert '"kmer_js"' in (tmp_path / "q.json").read_text()
    root = benchmark_layout(tmp_path / "gb")
    script(installed, "dnadiff-finetune", "task=human_nontata_promoters", f"data.root={root}", "cv.folds=2",
           "trainer.max_epochs=1", "model.d_model=16", "model.n_layer=1", "model.scan_backend=torch",
           "baseline_cnn.max_epochs=1", "progress=false", f"out_dir={tmp_path / 'ft'}")
    assert '"protocol"' in (tmp_path / "ft" / "human_nontata_promoters" / "cv.json").read_text()


def benchmark_layout(root: Path) -> Path:
    """A small genomic-benchmarks layout folder of real hg38 sequence (the shipped chr2 sample): two
    'classes' of 80 bp windows from two regions, 8 each; enough to run the fine-tuning script."""
    from dnadiff.data.genome import Genome
    from dnadiff.resources import default_fasta

    genome = Genome(default_fasta())
    for label, start in (("negative", 100_000), ("positive", 1_500_000)):
        folder = root / "human_nontata_promoters" / "test" / label
        folder.mkdir(parents=True)
        for k in range(8):
            (folder / f"r{k}.txt").write_text(genome.fetch("chr2", start + 5_000 * k, start + 5_000 * k + 80).upper())
    return root


def test_python_m_help_of_every_entry_point(installed: dict[str, Path]) -> None:
    modules = [target.split(":")[0].removesuffix(".__main__") for target in project_scripts().values()]
    for module, proc in zip(modules, run_all(installed, [[sys.executable, "-m", m, "--help"] for m in modules])):
        assert proc.returncode == 0, f"python -m {module} --help failed:\n{proc.stderr[-2000:]}"
        assert f"python -m {module}" in proc.stdout and "== Config ==" in proc.stdout, module


def installed_script(name: str) -> Path | None:
    """The environment's console script ``name``: in its scripts folder (or the user one), else on PATH."""
    folders = [sysconfig.get_path("scripts"), Path(sys.executable).parent]
    if f"{os.name}_user" in sysconfig.get_scheme_names():
        folders.append(sysconfig.get_path("scripts", f"{os.name}_user"))
    for folder in folders:
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    found = shutil.which(name)
    return Path(found) if found else None


def test_console_scripts_of_an_editable_install() -> None:
    """When this checkout is the environment's (editable) install, as in CI, its scripts find the configs."""
    probe = subprocess.run([sys.executable, "-c", "import dnadiff; print(dnadiff.__file__)"], cwd="/",
                           capture_output=True, text=True, timeout=TIMEOUT_S)
    installed_at = Path(probe.stdout.strip()).resolve().parent if probe.returncode == 0 else None
    if installed_at != (REPO / "dnadiff").resolve():
        pytest.skip(f"the environment's dnadiff is {installed_at or 'not installed'}, not this checkout "
                    f"(pip install -e . here to run this check)")
    for name in project_scripts():
        exe = installed_script(name)
        if exe is None:
            pytest.skip(f"{name} is not installed beside {sys.executable} nor on PATH")
        proc = subprocess.run([str(exe), "--help"], cwd="/", capture_output=True, text=True, timeout=TIMEOUT_S,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        assert proc.returncode == 0 and "== Config ==" in proc.stdout, f"{name}: {proc.stderr[-2000:]}"
    assert importlib.util.find_spec("dnadiff.configs") is not None
