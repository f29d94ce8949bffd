"""Draw a flow as Graphviz DOT text (no graphviz package needed to produce it)."""

from __future__ import annotations

from pathlib import Path

from headwater.core.flow import Flow
from headwater.core.task import Parameter


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def flow_to_dot(flow: Flow, filename: str | None = None) -> str:
    """The flow's graph in DOT; parameters are drawn as ellipses, data edges labelled.

    ``filename``, when given, receives the text too (render it with ``dot -Tpng``).
    """
    lines = [f"digraph {_quote(flow.name)} {{", "  rankdir=LR;"]
    for t in flow.sorted_tasks():
        shape = "ellipse" if isinstance(t, Parameter) else "box"
        lines.append(f"  {_quote(t.slug or t.name)} [label={_quote(t.name)}, shape={shape}];")
    for t in flow.sorted_tasks():
        for e in flow.edges_to(t):
            label = f" [label={_quote(e.key)}]" if e.key else " [style=dashed]"
            lines.append(f"  {_quote(e.upstream_task.slug or '')} -> {_quote(t.slug or '')}{label};")
    lines.append("}")
    dot = "\n".join(lines) + "\n"
    if filename is not None:
        Path(filename).write_text(dot)
    return dot
