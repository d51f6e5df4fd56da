"""Shared by the benchmarks: percentiles, and JSON + Markdown report files."""

from __future__ import annotations

import json
import math
import os

__all__ = ["percentile", "markdown_table", "write_report"]


def percentile(samples, q: float) -> float:
    """The q-th percentile (nearest rank) of a non-empty sequence."""
    if not samples:
        raise ValueError("percentile of no samples")
    data = sorted(samples)
    k = max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))
    return data[k]


def markdown_table(title: str, result: dict) -> str:
    """A two-column Markdown table of a flat result, targets marked met or missed."""
    targets = result.get("targets", {})
    lines = [f"## {title}", "", "| metric | value | target |", "|---|---|---|"]
    for key, value in result.items():
        if key == "targets":
            continue
        t = targets.get(key)
        mark = "" if t is None else f"{t['target']} ({'met' if t['met'] else 'MISSED'})"
        lines.append(f"| {key} | {value} | {mark} |")
    return "\n".join(lines) + "\n"


def write_report(directory: str, name: str, result: dict, title: str) -> list:
    """Write ``name.json`` and ``name.md`` into ``directory``; returns their paths."""
    os.makedirs(directory, exist_ok=True)
    jpath = os.path.join(directory, f"{name}.json")
    mpath = os.path.join(directory, f"{name}.md")
    with open(jpath, "w") as fh:
        json.dump(result, fh, indent=2)
    with open(mpath, "w") as fh:
        fh.write(markdown_table(title, result))
    return [jpath, mpath]


def check_targets(result: dict, targets) -> dict:
    """``{key: {target, met}}`` for ``(key, "<=" | ">=", value)`` targets."""
    return {k: {"target": f"{cmp} {t}", "met": (result[k] <= t if cmp == "<=" else
                                                result[k] >= t)} for k, cmp, t in targets}


def emit(args, name: str, title: str, result: dict) -> int:
    """Round floats, write the report files if asked, print Markdown (unless --json)
    and the JSON line last."""
    result = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in result.items()}
    if getattr(args, "report", None):
        write_report(args.report, name, result, title)
    if not getattr(args, "json", False):
        print(markdown_table(title, result))
    print(json.dumps(result), flush=True)
    return 0
