"""The package layout: every optimizer found from its registry name, parity rows mirroring the modules, static
exports, and layers that import downward only."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import mlx_optim
from mlx_optim.registry import FAMILIES, OPTIMIZERS
from tests.parity.harness import all_rows

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "mlx_optim"
OPTIMIZER_MODULES = sorted(p.stem for p in (PKG / "optimizers").glob("*.py") if p.name != "__init__.py")


def module_for(name: str) -> str:
    """The rule a reader follows: ``optimizers/<name>.py``, or the longest module name that prefixes ``name``;
    ``_e`` / ``_sn`` variants are feature compositions in ``mlx_optim/variants.py``; wrappers live in
    ``mlx_optim/wrappers/``."""
    cls = OPTIMIZERS[name]
    if cls.__module__ == "mlx_optim.variants":
        return "mlx_optim.variants"
    if cls.__module__.startswith("mlx_optim.wrappers."):
        return cls.__module__
    prefixes = [m for m in OPTIMIZER_MODULES if name.startswith(m)]
    return f"mlx_optim.optimizers.{max(prefixes, key=len)}" if prefixes else "<none>"


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_registry_name_finds_its_module(name):
    cls = OPTIMIZERS[name]
    assert cls.__module__ == module_for(name), (name, cls.__module__)
    if cls.__module__ == "mlx_optim.variants":
        assert name.endswith(("_e", "_sn")), name


def test_every_optimizer_module_defines_its_namesake_or_a_family():
    # a module is named after the optimizer it holds (adam.py: adam), or after a family whose members' names all
    # start with it (dadapt.py: dadaptadam, ...; schedulefree.py; emo.py; sophia.py)
    for module in OPTIMIZER_MODULES:
        names = [n for n, c in OPTIMIZERS.items() if c.__module__ == f"mlx_optim.optimizers.{module}"]
        assert names, f"optimizers/{module}.py registers nothing"
        assert all(n.startswith(module) for n in names), (module, names)


def rows_module_for(name: str) -> str:
    module = OPTIMIZERS[name].__module__
    if module.startswith("mlx_optim.optimizers."):
        return module.rsplit(".", 1)[1]
    if module.startswith("mlx_optim.wrappers."):
        return "wrappers_" + module.rsplit(".", 1)[1]
    return module.rsplit(".", 1)[1]  # variants


def test_parity_rows_mirror_the_modules():
    from tests.parity import rows as package

    by_module: dict[str, set[str]] = {}
    for row in all_rows():
        by_module.setdefault(row.source_module, set()).add(rows_module_for(row.name))
    wrong = {m: targets for m, targets in by_module.items() if targets != {m}}
    assert not wrong, f"rows modules holding rows of other modules: {wrong}"
    missing = set(OPTIMIZER_MODULES) - set(by_module)
    assert not missing, f"optimizer modules without a rows module: {sorted(missing)}"
    assert Path(package.__file__).parent.joinpath("__init__.py").exists()


def test_exports_are_generated_and_complete():
    result = subprocess.run([sys.executable, "scripts/gen_exports.py", "--check"], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr.decode()
    classes = {c.__name__ for c in OPTIMIZERS.values()}
    assert classes <= set(mlx_optim.__all__)
    for name in classes:
        assert getattr(mlx_optim, name).__name__ == name
    assert (PKG / "py.typed").exists()


def test_families_are_a_fixed_set():
    assert {c.family for c in OPTIMIZERS.values()} <= set(FAMILIES)


# ---------------------------------------------------------------------------- import layers
# functional <- base layer <- optimizers <- wrappers / features / variants <- factory, distributed, schedulers
# <- cli / integrations / the package's __init__.
LAYERS = {
    "blas": 0,
    "linalg": 0,
    "functional": 0,
    "core": 1,
    "base": 1,
    "execution": 1,
    "capabilities": 1,
    "refresh": 1,
    "streams": 1,
    "precision": 1,
    "quantized": 1,
    "fusion": 1,
    "kernels": 1,
    "autodiff": 1,
    "registry": 1,
    "docargs": 1,
    "packed": 1,
    "distributed.core": 1,
    "jit_pch": 1,
    "native": 1,
    "optimizers": 2,
    "wrappers": 3,
    "features": 3,
    "variants": 3,
    "factory": 4,
    "interop": 4,
    "_unsupported": 0,
    "distributed": 4,
    "schedulers": 4,
    "tasks": 5,
    "cli": 5,
    "check": 5,
    "demo": 5,
    "integrations": 5,
    "_catalog": 5,
    "__init__": 5,
    "__main__": 5,
}


def layer_of(module: str) -> int:
    """``module`` is dotted below ``mlx_optim`` (``optimizers.adam``); the longest key of LAYERS that prefixes it."""
    parts = module.split(".")
    for k in range(len(parts), 0, -1):
        key = ".".join(parts[:k])
        if key in LAYERS:
            return LAYERS[key]
    raise KeyError(f"mlx_optim.{module} has no layer in tests/test_layout.py LAYERS")


def package_modules():
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        yield ".".join(parts), path


def imports_of(path: Path, module: str):
    """``(target, lineno)`` for every ``mlx_optim`` import in ``path``, function-level ones included."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level:  # relative
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.startswith("mlx_optim"):
                target = node.module[len("mlx_optim.") :] if node.module != "mlx_optim" else ""
            else:
                continue
            if target in ("",) or target == "optimizers":  # `from mlx_optim import x` / `from ..optimizers import x`
                for alias in node.names:
                    yield (f"{target}.{alias.name}" if target else alias.name), node.lineno
            else:
                yield target, node.lineno
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("mlx_optim."):
                    yield alias.name[len("mlx_optim.") :], node.lineno


def test_layers_import_downward_only():
    bad = []
    for module, path in package_modules():
        own = layer_of(module)
        for target, line in imports_of(path, module):
            if layer_of(target) > own:
                bad.append(f"mlx_optim/{path.relative_to(PKG)}:{line} imports mlx_optim.{target}")
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_optimizer_modules_import_only_lower_layers_and_their_root():
    """An optimizer module may import another optimizer module only for a base class of its own classes."""
    bad = []
    for path in sorted((PKG / "optimizers").glob("*.py")):
        if path.name == "__init__.py":
            continue
        tree = ast.parse(path.read_text())
        bases = {ast.unparse(b) for n in tree.body if isinstance(n, ast.ClassDef) for b in n.bases}
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mlx_optim.optimizers."):
                names = {a.asname or a.name for a in node.names}
                if not names & bases:
                    bad.append(f"{path.name}:{node.lineno} imports {node.module} without subclassing from it")
            if isinstance(node, ast.ImportFrom) and (node.module or "") in ("mlx_optim.features", "mlx_optim.variants"):
                bad.append(f"{path.name}:{node.lineno} imports {node.module} (a higher layer)")
    assert not bad, "\n".join(bad)


def test_layer_check_sees_a_violation(tmp_path):
    # the checker itself: an optimizer-layer module importing a wrapper is reported
    assert layer_of("optimizers.adam") == 2 and layer_of("wrappers.sam") == 3
    fake = tmp_path / "x.py"
    fake.write_text("def f():\n    from mlx_optim.wrappers import SAM\n")
    assert [t for t, _ in imports_of(fake, "optimizers.x")] == ["wrappers"]
