"""The figures docs/speed.md quotes, read from the outputs the speed commands wrote (docs/speed/): a page renders
them from there, so that its prose cannot hold a ratio no run printed."""

from __future__ import annotations

import re
from pathlib import Path

SPEED = Path(__file__).resolve().parents[2] / "docs" / "speed"


def _sections(text: str) -> dict[str, list[str]]:
    """{recipe: its lines} of an output whose sections start with 'RECIPE on DATASET ...:'."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        match = re.match(r"(\S+) on \S+.*:$", line)
        if match:
            current = match.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    return sections


class SpeedOutputs:
    """bench-backends.txt, bench.txt and bench-grid.txt, as figures."""

    def __init__(self, root: Path = SPEED) -> None:
        self.root = root

    def _read(self, name: str) -> str:
        return (self.root / name).read_text()

    def ratio(self, recipe: str, label: str) -> float:
        """A backend's time per epoch as a multiple of the fastest's (bench-backends.txt)."""
        for line in _sections(self._read("bench-backends.txt"))[recipe]:
            match = re.match(rf"\s+{re.escape(label)} takes ([\d.]+)x the fastest's time", line)
            if match:
                return float(match.group(1))
        raise KeyError(f"bench-backends.txt has no ratio for {label} on {recipe}")

    def ratios(self, label: str) -> list[float]:
        """The backend's ratio on every recipe bench-backends.txt measured, in its order."""
        return [self.ratio(recipe, label) for recipe in _sections(self._read("bench-backends.txt"))]

    def span(self, label: str) -> str:
        """'1.60x to 1.96x': the lowest and highest of a backend's ratios."""
        values = self.ratios(label)
        return f"{min(values):.2f}x to {max(values):.2f}x"

    def recipes(self) -> list[str]:
        return list(_sections(self._read("bench-backends.txt")))

    def fastest(self) -> set[str]:
        """The backends bench-backends.txt names the fastest on some recipe."""
        return set(re.findall(r"the fastest's time \(([^)]+)\)", self._read("bench-backends.txt")))

    def script(self, recipe: str) -> dict[str, str]:
        """bench.txt on one of the blog post's scripts: the speedup in its own framework, and the fastest
        framework's name and speedup."""
        lines = "\n".join(_sections(self._read("bench.txt"))[recipe])
        own = re.search(r"speedup ([\d.]+)x in (\S+)", lines)
        best = re.search(r"fastest framework (\S+), ([\d.]+)x the seed script", lines)
        if not own or not best:
            raise KeyError(f"bench.txt has no speedups for {recipe}")
        return {"own": own.group(1), "framework": own.group(2), "fastest": best.group(1), "best": best.group(2)}

    def grid(self) -> dict[str, object]:
        """bench-grid.txt: the best setting's gain, and each batched backend's ratios for 1, 2, 4 seeds."""
        text = self._read("bench-grid.txt")
        best = re.search(r"best on \d+ cores: .*?, ([\d.]+)x the other's", text)
        batched = {m.group(1): [float(x) for x in re.findall(r"\(([\d.]+)x\)", m.group(0))]
                   for m in re.finditer(r"^\s+(\S+)\s+own step.*$", text, flags=re.MULTILINE)}
        batched = {name: values for name, values in batched.items() if values}
        if not best:
            raise KeyError("bench-grid.txt has no best setting")
        return {"best": best.group(1), "batched": batched}
