"""Spelling templates: validation, mix weights, and rendering.

Templates and mixes are data (conf/template/*.yaml). This module checks them once, up
front, so a typo in YAML is one clear error before any artifact is written.
"""
from __future__ import annotations

import string
from dataclasses import dataclass
from typing import Any

from spelling_exp.errors import ConfigError

CATEGORIES = ("spelling_first", "word_first")
PLACEHOLDERS = frozenset({"word", "spelling"})


@dataclass(frozen=True)
class Template:
    id: str
    category: str
    style: str
    user: str
    assistant: str

    def render(self, word: str, separator: str, spelled: str | None = None) -> tuple[str, str]:
        """(user, assistant) texts; ``spelled``: the letters to spell out, if not the word's own (placebo)."""
        spelling = separator.join(word if spelled is None else spelled)
        return (self.user.format(word=word, spelling=spelling),
                self.assistant.format(word=word, spelling=spelling))


@dataclass(frozen=True)
class Cell:
    """One (category, style, separator) combination and its share of the examples."""
    category: str
    style: str
    separator: str
    weight: float


def _placeholders(text: str, where: str) -> set[str]:
    try:
        names = {f for _, f, _, _ in string.Formatter().parse(text) if f is not None}
    except ValueError as e:
        raise ConfigError(f"{where}: bad braces in template text ({e}); write literal braces as {{{{ }}}}") from None
    unknown = names - PLACEHOLDERS
    if unknown:
        raise ConfigError(f"{where}: unknown placeholder(s) {sorted(unknown)}; allowed: {{word}}, {{spelling}}")
    return names


def load_templates(cfg: Any) -> dict[str, Template]:
    if not cfg.templates:
        raise ConfigError(f"template preset '{cfg.name}' defines no templates")
    out: dict[str, Template] = {}
    for tid, spec in cfg.templates.items():
        where = f"template '{tid}'"
        if spec.category not in CATEGORIES:
            raise ConfigError(f"{where}: unknown category '{spec.category}' (known: {', '.join(CATEGORIES)})")
        names = _placeholders(spec.user, where + " user") | _placeholders(spec.assistant, where + " assistant")
        if "spelling" not in _placeholders(spec.assistant, where):
            raise ConfigError(f"{where}: the assistant answer must contain {{spelling}}")
        if "word" not in names:
            raise ConfigError(f"{where}: the template never mentions {{word}}")
        out[str(tid)] = Template(str(tid), spec.category, spec.style, spec.user, spec.assistant)
    return out


def mix_cells(cfg: Any, templates: dict[str, Template]) -> list[Cell]:
    """Cells with positive weight (product of normalised per-dimension weights), fixed order."""
    styles_known = sorted({t.style for t in templates.values()})
    dims = {
        "category": (cfg.mix.categories, list(CATEGORIES)),
        "style": (cfg.mix.styles, styles_known),
        "separator": (cfg.mix.separators, sorted(cfg.separators)),
    }
    normalised: dict[str, dict[str, float]] = {}
    for dim, (weights, known) in dims.items():
        if not weights:
            raise ConfigError(f"template.mix: no {dim} weights given (known {dim}s: {', '.join(known)})")
        for name, w in weights.items():
            if name not in known:
                raise ConfigError(f"template.mix: unknown {dim} '{name}' (known: {', '.join(known)})")
            if w < 0:
                raise ConfigError(f"template.mix: negative weight {w} for {dim} '{name}'")
        total = float(sum(weights.values()))
        if total <= 0:
            raise ConfigError(f"template.mix: {dim} weights sum to zero; give at least one {dim} a positive weight")
        normalised[dim] = {k: float(v) / total for k, v in sorted(weights.items()) if v > 0}

    cells = []
    for cat, wc in normalised["category"].items():
        for style, ws in normalised["style"].items():
            if not any(t.category == cat and t.style == style for t in templates.values()):
                raise ConfigError(f"template.mix: no template has category '{cat}' and style '{style}'")
            for sep, wp in normalised["separator"].items():
                cells.append(Cell(cat, style, sep, wc * ws * wp))
    return cells


def allocate(cells: list[Cell], n: int) -> list[int]:
    """Largest-remainder apportionment of n examples to cells: exact total, max deviation < 1."""
    quotas = [c.weight * n for c in cells]
    counts = [int(q) for q in quotas]
    remainder = n - sum(counts)
    order = sorted(range(len(cells)), key=lambda i: (-(quotas[i] - counts[i]), i))
    for i in order[:remainder]:
        counts[i] += 1
    return counts
