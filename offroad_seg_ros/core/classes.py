"""The class table: raw mask IDs <-> class indices, names, colours and costs.

Everything that needs to know about classes (training, the node, the evaluator,
reports) goes through `ClassTable`, loaded from `config/classes.yaml` or from a
model artifact's `model.json`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from offroad_seg_ros.core.resources import config_path

IGNORE_INDEX = 255
UNKNOWN_COST = 255  # a cost image's "no information" (Nav2's NO_INFORMATION)
# Marks a raw ID that is not in the table inside the strict lookup table.
# Class indices must stay below it.
_UNKNOWN = 254
GROUPS = ("free", "rough", "obstacle", "sky")


class UnknownRawIdError(ValueError):
    """A mask holds raw IDs that are not in the class table."""

    def __init__(self, values: Mapping[int, int], source: str | None = None):
        self.values = dict(values)
        self.source = source
        listed = ", ".join(f"{v} ({n} px)" for v, n in sorted(self.values.items()))
        where = f" in {source}" if source else ""
        super().__init__(
            f"unknown raw mask ID(s){where}: {listed}. Add them to config/classes.yaml, "
            "or map them to the ignore index explicitly (ignore_unknown=True, "
            "--ignore-unknown on the command line)."
        )


@dataclass(frozen=True)
class ClassInfo:
    raw_id: int
    name: str
    color: tuple[int, int, int]
    group: str
    cost: int


class ClassTable:
    """Ordered classes; index i is the model's output channel i."""

    def __init__(
        self,
        classes: Sequence[ClassInfo],
        ignore_raw_ids: Sequence[int] = (0,),
        ignore_index: int = IGNORE_INDEX,
    ):
        if not classes:
            raise ValueError("class table is empty")
        if len(classes) >= _UNKNOWN:
            raise ValueError(f"at most {_UNKNOWN - 1} classes are supported, got {len(classes)}")
        if ignore_index != IGNORE_INDEX:
            raise ValueError(f"ignore_index must be {IGNORE_INDEX}, got {ignore_index}")
        raw = [c.raw_id for c in classes]
        if len(set(raw)) != len(raw):
            raise ValueError(f"duplicate raw IDs in class table: {raw}")
        for c in classes:
            if not 0 <= c.raw_id <= 65535:
                raise ValueError(f"class {c.name!r}: raw_id {c.raw_id} is not a uint16 value")
            if c.raw_id in ignore_raw_ids:
                raise ValueError(f"class {c.name!r}: raw_id {c.raw_id} is also an ignore ID")
            if c.group not in GROUPS:
                raise ValueError(f"class {c.name!r}: group {c.group!r} is not one of {GROUPS}")
            if not 0 <= c.cost <= 255:
                raise ValueError(f"class {c.name!r}: cost {c.cost} is outside 0..255")
            if len(c.color) != 3 or not all(0 <= v <= 255 for v in c.color):
                raise ValueError(f"class {c.name!r}: color {c.color} is not an RGB triple")
        self.classes: tuple[ClassInfo, ...] = tuple(classes)
        self.ignore_raw_ids: tuple[int, ...] = tuple(int(v) for v in ignore_raw_ids)
        self.ignore_index = ignore_index

        strict = np.full(65536, _UNKNOWN, dtype=np.uint8)
        strict[list(self.ignore_raw_ids)] = IGNORE_INDEX
        strict[raw] = np.arange(len(raw), dtype=np.uint8)
        self._lut_strict = strict
        lenient = strict.copy()
        lenient[lenient == _UNKNOWN] = IGNORE_INDEX
        self._lut_lenient = lenient

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ClassTable:
        try:
            classes = [
                ClassInfo(
                    raw_id=int(c["raw_id"]),
                    name=str(c["name"]),
                    color=tuple(int(v) for v in c["color"]),  # type: ignore[arg-type]
                    group=str(c["group"]),
                    cost=int(c["cost"]),
                )
                for c in data["classes"]
            ]
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed class table entry: missing or invalid field {exc}") from exc
        return cls(
            classes,
            ignore_raw_ids=data.get("ignore_raw_ids", (0,)),
            ignore_index=int(data.get("ignore_index", IGNORE_INDEX)),
        )

    @classmethod
    def from_yaml(cls, path: str | Path | None = None) -> ClassTable:
        """Load a class table YAML file; the installed `config/classes.yaml` by default."""
        path = Path(path) if path is not None else config_path("classes.yaml")
        try:
            data = yaml.safe_load(path.read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"class table not found: {path}") from None
        try:
            return cls.from_dict(data)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc

    @classmethod
    def default(cls) -> ClassTable:
        return cls.from_yaml()

    def to_dict(self) -> dict[str, Any]:
        return {
            "ignore_index": self.ignore_index,
            "ignore_raw_ids": list(self.ignore_raw_ids),
            "classes": [{**asdict(c), "color": list(c.color)} for c in self.classes],
        }

    # -- properties -----------------------------------------------------------
    def __len__(self) -> int:
        return len(self.classes)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ClassTable) and self.to_dict() == other.to_dict()

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.classes]

    @property
    def raw_ids(self) -> list[int]:
        return [c.raw_id for c in self.classes]

    @property
    def novel_index(self) -> int:
        """The index a class mask that marks novel pixels gives them (one past the classes;
        the Segmenter's known_mask, what the ground outputs project)."""
        return len(self.classes)

    @property
    def sky_index(self) -> int | None:
        """The first class of group sky, None without one."""
        return next((i for i, c in enumerate(self.classes) if c.group == "sky"), None)

    def index_of(self, name: str) -> int:
        for i, c in enumerate(self.classes):
            if c.name.lower() == name.lower():
                return i
        raise KeyError(f"no class named {name!r}; classes are {self.names}")

    # -- lookup tables (index 255 = ignore / no prediction) -------------------
    def color_lut(self) -> np.ndarray:
        """(256, 3) uint8 RGB; ignore is black."""
        lut = np.zeros((256, 3), dtype=np.uint8)
        lut[: len(self)] = [c.color for c in self.classes]
        return lut

    def cost_lut(self, overrides: Mapping[str, int] | None = None) -> np.ndarray:
        """(256,) uint8 Nav2 cost per class index; ignore maps to 255 (unknown).

        `overrides` maps class names to costs (e.g. from node parameters).
        """
        lut = np.full(256, 255, dtype=np.uint8)
        lut[: len(self)] = [c.cost for c in self.classes]
        for name, cost in (overrides or {}).items():
            if not 0 <= int(cost) <= 255:
                raise ValueError(f"cost override for {name!r} is {cost}, outside 0..255")
            lut[self.index_of(name)] = int(cost)
        return lut

    def raw_lut(self, ignore_unknown: bool = False) -> np.ndarray:
        """(65536,) uint8 raw ID -> class index. Unknown IDs map to the ignore
        index when `ignore_unknown`, else to an internal marker (see `remap`)."""
        return self._lut_lenient if ignore_unknown else self._lut_strict

    def remap(
        self, raw_mask: np.ndarray, *, ignore_unknown: bool = False, source: str | None = None
    ) -> np.ndarray:
        """uint16 raw-ID mask -> uint8 class indices (255 = ignore), same shape.

        Raises UnknownRawIdError naming the values, their pixel counts and
        `source` (usually the file name) unless `ignore_unknown`.
        """
        if raw_mask.dtype != np.uint16:
            raise TypeError(
                f"raw mask{' ' + source if source else ''} must be uint16, got {raw_mask.dtype}"
            )
        out = self.raw_lut(ignore_unknown)[raw_mask]
        if not ignore_unknown:
            bad = out == _UNKNOWN
            if bad.any():
                values, counts = np.unique(raw_mask[bad], return_counts=True)
                raise UnknownRawIdError(dict(zip(values.tolist(), counts.tolist(), strict=False)), source)
        return out

    def to_raw(self, index_mask: np.ndarray) -> np.ndarray:
        """uint8 class indices -> uint16 raw IDs (ignore -> first ignore raw ID)."""
        lut = np.full(256, self.ignore_raw_ids[0] if self.ignore_raw_ids else 0, dtype=np.uint16)
        lut[: len(self)] = self.raw_ids
        return lut[index_mask]
