"""Layering and RNG rules of STYLE.md, checked on the source tree with ast."""

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIBRARY_DIRS = ("degradations", "models", "pipelines", "tuning", "bench")
STDLIB = set(sys.stdlib_module_names)
NP_RANDOM_ALLOWED = {"default_rng", "Generator", "SeedSequence", "PCG64", "PCG64DXSM", "BitGenerator", "Philox"}
CV2_BANNED = {"randn", "randu", "setRNGSeed", "randShuffle"}


def _py_files(*dirs: str) -> list[Path]:
    return sorted(p for d in dirs for p in (ROOT / d).rglob("*.py"))


def _imports(tree: ast.AST) -> list[str]:
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def _top(name: str) -> str:
    return name.split(".")[0]


def _parse(path: Path) -> ast.AST:
    return ast.parse(path.read_text(), filename=str(path))


def test_library_packages_exist():
    for d in ("degradations", "models", "pipelines", "tuning", "cluster", "tests"):
        assert (ROOT / d).is_dir(), d
    assert len(_py_files("degradations", "models", "pipelines")) > 10


@pytest.mark.parametrize("package", ["degradations", "models"])
def test_ray_and_mlflow_are_not_imported_below_pipelines(package):
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _py_files(package)
        for name in _imports(_parse(p))
        if _top(name) in {"ray", "mlflow", "pipelines", "tuning"}
    ]
    assert not bad, bad


def test_mlflow_is_imported_only_in_tracking_and_tuning():
    bad = [
        str(p.relative_to(ROOT))
        for p in _py_files("pipelines", "bench")
        if p.name != "tracking.py" and any(_top(n) == "mlflow" for n in _imports(_parse(p)))
    ]
    assert not bad, bad


def test_no_model_knows_about_data_parallelism():
    """The loop wraps its TrainStep (pipelines/train_step.py) in DDP; models never see, import or unwrap it."""
    pattern = re.compile(r"\bDDP\b|DistributedDataParallel|torch\.nn\.parallel|\.module\b")
    bad = [f"{p.relative_to(ROOT)}:{i}" for p in _py_files("models")
           for i, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert not bad, bad


def test_degradations_use_only_numpy_and_opencv():
    allowed = STDLIB | {"numpy", "cv2", "degradations"}
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _py_files("degradations")
        for name in _imports(_parse(p))
        if _top(name) not in allowed
    ]
    assert not bad, bad


def test_models_do_not_import_pipelines():
    bad = [
        f"{p.relative_to(ROOT)}: {name}"
        for p in _py_files("models")
        for name in _imports(_parse(p))
        if _top(name) in {"pipelines", "tuning"}
    ]
    assert not bad, bad


def _banned_rng_calls(tree: ast.AST) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            mod = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names]
            if "random" in names and mod is None or mod == "random":
                found.append(f"line {node.lineno}: stdlib random")
            if mod == "numpy.random" and set(names) - NP_RANDOM_ALLOWED:
                found.append(f"line {node.lineno}: from numpy.random import {names}")
        if not isinstance(node, ast.Attribute):
            continue
        value = node.value
        # np.random.<dist> / numpy.random.<dist>
        if (
            isinstance(value, ast.Attribute)
            and value.attr == "random"
            and isinstance(value.value, ast.Name)
            and value.value.id in {"np", "numpy"}
            and node.attr not in NP_RANDOM_ALLOWED
        ):
            found.append(f"line {node.lineno}: np.random.{node.attr}")
        if isinstance(value, ast.Name) and value.id == "cv2" and node.attr in CV2_BANNED:
            found.append(f"line {node.lineno}: cv2.{node.attr}")
    return found


def test_no_global_or_banned_rng_outside_tests():
    bad = {
        str(p.relative_to(ROOT)): calls
        for p in _py_files(*LIBRARY_DIRS)
        if (calls := _banned_rng_calls(_parse(p)))
    }
    assert not bad, bad


def test_banned_rng_detector_catches_examples():
    src = "import random\nimport numpy as np\nnp.random.seed(0)\nx = np.random.rand(3)\nimport cv2\ncv2.randn(a, 0, 1)\n"
    assert len(_banned_rng_calls(ast.parse(src))) == 4
    assert _banned_rng_calls(ast.parse("import numpy as np\nrng = np.random.default_rng([1, 2])\n")) == []


def test_no_cuda_calls_in_library_code():
    bad = []
    for p in _py_files("degradations", "models"):
        for node in ast.walk(_parse(p)):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "cuda":
                bad.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad


def test_torch_load_always_uses_weights_only():
    bad = []
    for p in _py_files(*LIBRARY_DIRS):
        for node in ast.walk(_parse(p)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "load"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "torch"
            ):
                kw = {k.arg: k.value for k in node.keywords}
                if not (isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True):
                    bad.append(f"{p.relative_to(ROOT)}:{node.lineno}")
    assert not bad, bad


def test_importing_the_train_loop_loads_no_tracking_or_method_only_packages():
    # A Ray worker unpickles the train loop; mlflow, diffusers and the metric packages are loaded by the calls that use them.
    heavy = ("mlflow", "diffusers", "peft", "pyiqa", "lpips")
    code = f"import sys, pipelines.loop; print(sorted(m for m in {heavy!r} if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr


def test_importing_osediff_prints_no_kernel_download_warning():
    proc = subprocess.run([sys.executable, "-c", "import models.osediff.method"], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "gemm_4bit" not in proc.stdout + proc.stderr, proc.stdout + proc.stderr


@pytest.mark.parametrize("flag", ["--help", "--print-config"])
def test_train_help_and_print_config_load_no_ray_mlflow_or_diffusers(flag):
    # They start in about the time of `import torch`: Ray, Ray Data/Train, MLflow and diffusers load for a run only.
    proc = subprocess.run([sys.executable, "-X", "importtime", "pipelines/train.py", flag], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "torch" in imported, proc.stderr[-3000:]
    assert not imported & {"ray", "mlflow", "diffusers", "peft", "pandas"}, sorted(imported & {"ray", "mlflow"})


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imported_modules(tree: ast.AST, modules: set[str], *, deferred: bool) -> set[str]:
    """The project modules a file imports: `from a.b import c` is a.b.c when that is a module, else a.b.

    deferred=False skips imports inside functions and under `if TYPE_CHECKING:` (they run later or never).
    """
    found = set()

    def visit(node: ast.AST) -> None:
        if not deferred and isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            return
        if not deferred and isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                child = f"{node.module}.{alias.name}"
                found.add(child if child in modules else node.module)
        for child_node in ast.iter_child_nodes(node):
            visit(child_node)

    visit(tree)
    return found & modules


def test_no_module_of_the_project_imports_itself_back():
    """The import graph of the library packages has no cycle: module-level imports everywhere, and in
    pipelines/ and tuning/ function-level ones too (launch.py imports the loop when a run starts, and the loop
    imports neither launch.py nor train.py). A method config's build_method imports its method class when
    called, the one deferred edge back that typed dispatch needs (models/*/config.py).
    """
    paths = {_module_name(p): p for p in _py_files(*LIBRARY_DIRS)}
    graph = {name: _imported_modules(_parse(path), set(paths), deferred=name.split(".")[0] in ("pipelines", "tuning"))
             - {name} for name, path in paths.items()}
    state, cycles = {}, []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                cycles.append(" -> ".join([*stack[stack.index(nxt):], nxt]))
            elif nxt not in state:
                visit(nxt, [*stack, nxt])
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles
