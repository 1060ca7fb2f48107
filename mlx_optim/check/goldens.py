"""The stored reference trajectories ("goldens") that ``mlx-optim check`` holds the optimizers to, without PyTorch.

``mlx_optim/data/goldens.npz`` is a zip of ``.npy`` arrays (deflate-compressed, written with fixed timestamps so
that the same trajectories give the same bytes) plus ``index.json``:

* ``rows``: one entry per portable parity row: ``label``, ``name`` (the registry name), ``id``, ``kwargs``
  (:mod:`mlx_optim.check.encode`), ``steps``, ``atol``, ``rtol``, ``program`` and ``options`` (the MLX side:
  :mod:`mlx_optim.check.programs`, gradient program included), ``compare`` (``null``: allclose on the
  trajectories; else a statistical comparison of :mod:`mlx_optim.check.compare`), ``fp64_envelope`` (ill-conditioned
  rows: a tensor may also pass within this multiple of the float32 reference's distance from its float64 run, which
  is stored too: ``leaves64``), ``float64`` (the row needs float64, which MLX runs on the CPU only) and ``leaves`` /
  ``extras`` (the stored arrays' names);
* ``not_portable``: the rows that cannot be checked from the file, each with the reason;
* ``meta``: the reference versions the file was generated with and a fingerprint of NumPy's random numbers
  (:func:`mlx_optim.check.problems.digest`).

Each trajectory is stored per leaf as one array of shape ``(steps, *leaf_shape)`` in the dtype the reference
produced (float32 where the comparison is float32). ``scripts/gen_goldens.py`` writes the file from the parity
table and the pinned references; ``tests/parity`` fails when a regenerated trajectory differs from it.
"""

from __future__ import annotations

import dataclasses
import io
import json
import zipfile
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from mlx_optim.check import encode, programs

__all__ = ["FORMAT", "GoldenRow", "Goldens", "default_path", "load", "save", "write"]

FORMAT = 1
_STAMP = (1980, 1, 1, 0, 0, 0)


def default_path() -> Path:
    """The file shipped inside the package."""
    return Path(str(resources.files("mlx_optim") / "data" / "goldens.npz"))


@dataclasses.dataclass
class GoldenRow:
    """One stored row: its index entry and its arrays."""

    entry: dict
    trajectory: list[dict[str, np.ndarray]]
    extras: dict[str, np.ndarray]
    trajectory64: list[dict[str, np.ndarray]] | None = None

    @property
    def label(self) -> str:
        return self.entry["label"]

    @property
    def name(self) -> str:
        return self.entry["name"]

    def case(self) -> programs.Case:
        """The row as the MLX side runs it (keywords decoded)."""
        e = self.entry
        return programs.Case(
            label=e["label"],
            name=e["name"],
            kwargs=encode.decode(e["kwargs"]),
            steps=e["steps"],
            atol=e["atol"],
            rtol=e["rtol"],
            program=e["program"],
            options=e["options"],
            compare=e["compare"],
        )


@dataclasses.dataclass
class Goldens:
    """The loaded file: ``rows`` (by label, in table order), ``not_portable`` and ``meta``."""

    rows: dict[str, GoldenRow]
    not_portable: list[dict]
    meta: dict


def _stack(trajectory: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    keys = list(trajectory[0])
    if any(list(step) != keys for step in trajectory):
        raise ValueError("every step of a trajectory must record the same names")
    return {k: np.stack([np.asarray(step[k]) for step in trajectory]) for k in keys}


def _npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.ascontiguousarray(a), allow_pickle=False)
    return buf.getvalue()


def write(path: Path | str, rows: list[dict], not_portable: list[dict], meta: dict) -> None:
    """Write the file. ``rows``: ``{"entry": index entry, "trajectory": [...], "extras": {name: array},
    "trajectory64": [...] or None}`` (the float64 run of :attr:`fp64_envelope` rows)."""
    index = {"format": FORMAT, "meta": meta, "rows": [], "not_portable": not_portable}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:

        def put(name: str, data: bytes) -> None:
            info = zipfile.ZipInfo(name, date_time=_STAMP)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            z.writestr(info, data, compresslevel=9)

        for i, row in enumerate(rows):
            entry = dict(row["entry"])
            stacked = _stack(row["trajectory"])
            entry["leaves"] = list(stacked)
            entry["extras"] = list(row.get("extras") or {})
            for j, a in enumerate(stacked.values()):
                put(f"t{i}_{j}.npy", _npy(a))
            for j, a in enumerate((row.get("extras") or {}).values()):
                put(f"x{i}_{j}.npy", _npy(np.asarray(a)))
            if row.get("trajectory64") is not None:
                stacked64 = _stack(row["trajectory64"])
                entry["leaves64"] = list(stacked64)
                for j, a in enumerate(stacked64.values()):
                    put(f"u{i}_{j}.npy", _npy(a))
            index["rows"].append(entry)
        put("index.json", json.dumps(index, indent=0).encode())


def load(path: Path | str | None = None) -> Goldens:
    """Read the file (default: the one shipped with the package)."""
    path = default_path() if path is None else Path(path)
    with zipfile.ZipFile(path) as z:
        index = json.loads(z.read("index.json"))
        if index.get("format") != FORMAT:
            raise ValueError(f"{path}: format {index.get('format')}, this mlx_optim reads format {FORMAT}")

        def get(name: str) -> np.ndarray:
            return np.lib.format.read_array(io.BytesIO(z.read(name)), allow_pickle=False)

        def unstack(prefix: str, i: int, leaves: list[str]) -> list[dict[str, np.ndarray]]:
            stacked = {k: get(f"{prefix}{i}_{j}.npy") for j, k in enumerate(leaves)}
            return [{k: a[t] for k, a in stacked.items()} for t in range(len(next(iter(stacked.values()))))]

        rows = {}
        for i, e in enumerate(index["rows"]):
            extras = {k: get(f"x{i}_{j}.npy") for j, k in enumerate(e["extras"])}
            traj64 = unstack("u", i, e["leaves64"]) if "leaves64" in e else None
            rows[e["label"]] = GoldenRow(e, unstack("t", i, e["leaves"]), extras, traj64)
    return Goldens(rows, index["not_portable"], index["meta"])


def save(gold: Goldens, path: Path | str) -> None:
    """Write a loaded (possibly edited) :class:`Goldens` back to a file."""
    rows = []
    for row in gold.rows.values():
        entry = {k: v for k, v in row.entry.items() if k not in ("leaves", "extras", "leaves64")}
        rows.append(
            {"entry": entry, "trajectory": row.trajectory, "extras": row.extras, "trajectory64": row.trajectory64}
        )
    write(path, rows, gold.not_portable, gold.meta)
