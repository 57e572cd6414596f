"""Markdown tables and PNG figures shared by every report (run, sweep, study, data)."""
from __future__ import annotations

import io
from typing import Any


def cell(v: Any) -> str:
    """A Markdown table cell: pipes escaped, one line."""
    return str(v).replace("|", "\\|").replace("\n", " ").strip()


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown pipe table; every row must have exactly as many cells as the header."""
    for r in rows:
        if len(r) != len(head):
            raise ValueError(f"table row has {len(r)} cells, header {len(head)}: {r}")
    return (["| " + " | ".join(cell(h) for h in head) + " |", "|" + "---|" * len(head)]
            + ["| " + " | ".join(cell(c) for c in r) + " |" for r in rows])


def fig_png(fig: Any, dpi: int = 110) -> bytes:
    """A matplotlib figure as PNG bytes; the figure is closed (long reports make many)."""
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()
