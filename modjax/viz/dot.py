"""Graphviz DOT (and SVG through the ``dot`` binary) for flow graphs.

``dot(graph)`` draws graph inputs, nodes (id, module, tags, per-sample output shape),
stream edges and ``using`` edges (dashed; forward references in red). Composite nodes
(gate, switch, loop, map) are clusters showing their router/experts/branches/body/
condition, and labelled child graphs are clusters with their own nodes.
``dot_with_profile`` colours nodes green -> yellow -> red by the last profiled forward,
shows durations, and groups nodes by topological level with wall-clock and parallelism.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

from modjax.observe.profiling import Profile, format_node_time, heat_color

__all__ = ["dot", "dot_with_profile", "svg", "svg_with_profile"]


def _q(text: Any) -> str:
    # backslashes are left alone on purpose: "\\n" in labels is DOT's line break
    return '"' + str(text).replace('"', '\\"') + '"'


def _shape(spec: Any) -> str:
    return "(" + ", ".join(str(d) for d in spec.shape) + ")"


class _Writer:
    def __init__(self, profile: Profile | None) -> None:
        self.lines: list[str] = []
        self.profile = profile

    def emit(self, graph: Any, prefix: str, indent: str, inputs: list[str]) -> str:
        """Write ``graph``'s nodes; ``inputs`` are the DOT names feeding its inputs.

        Returns the DOT name of the graph's output node.
        """
        names: dict[str, str] = {f"$in{i}": n for i, n in enumerate(inputs)}
        by_level: dict[int, list[Any]] = {}
        for e in graph.entries:
            by_level.setdefault(e.level, []).append(e)
        top = self.profile is not None and not prefix
        levels = {lv.index: lv for lv in self.profile.levels} if top else {}
        for level, entries in by_level.items():
            ind = indent
            if top:
                lv = levels.get(level)
                label = f"level {level}"
                if lv is not None:
                    label += f": {format_node_time(lv.wall_clock)}"
                    if lv.num_nodes > 1:
                        label += f", parallelism {lv.parallelism:.2f}x"
                self.lines.append(f"{indent}subgraph cluster_level_{level} {{")
                self.lines.append(f"{indent}  label={_q(label)}; style=dashed; color=gray60;")
                ind = indent + "  "
            for e in entries:
                names[e.id] = self._entry(graph, e, prefix, ind, names)
            if top:
                self.lines.append(f"{indent}}}")
        for e in graph.entries:
            for tag, pid, fwd in e.refs:
                style = 'style=dashed, color=red, constraint=false, label=' + _q(
                    f"{tag} (previous call)") if fwd else "style=dashed, label=" + _q(tag)
                self.lines.append(f"{indent}{_q(names[pid])} -> {_q(names[e.id])} [{style}];")
        return names[graph.output_node]

    def _entry(self, graph: Any, e: Any, prefix: str, indent: str,
               names: dict[str, str]) -> str:
        name = f"{prefix}{e.id}"
        srcs = [names[s] for s in e.inputs]
        tags = f"\\n#{' #'.join(e.tags)}" if e.tags else ""
        try:
            shape = "\\n" + _shape(graph.node_spec(e.id))
        except KeyError:
            shape = ""
        timing, color = "", "#eef3fb"
        if self.profile is not None and not prefix:
            timing = f"\\n{format_node_time(self.profile.timing(e.id))}"
            color = heat_color(self.profile.fraction(e.id))
        child = e.child
        if child is not None:
            self.lines.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
            self.lines.append(f"{indent}  label={_q(f'{e.id} [subgraph]{timing}')}; "
                              f"style=rounded; color={_q(color if timing else 'steelblue')};")
            out = self.emit(child, name + "/", indent + "  ", srcs)
            self.lines.append(f"{indent}}}")
            return out
        label = f"{e.id}\\n{e.node.describe()}{tags}{shape}{timing}"
        kind = e.node.kind
        if kind in ("gate", "switch", "loop", "map"):
            self.lines.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
            self.lines.append(f"{indent}  label={_q(kind)}; style=rounded; color=gray40;")
            for role, m in e.node.models().items():
                sub = f"{name}/{role}"
                self.lines.append(f"{indent}  {_q(sub)} [label={_q(f'{role}: {_mname(m)}')}, "
                                  "shape=box, style=rounded];")
                self.lines.append(f"{indent}  {_q(sub)} -> {_q(name)} [style=dotted, "
                                  "arrowhead=none];")
            self.lines.append(f"{indent}  {_q(name)} [label={_q(label)}, shape=box, "
                              f"style=\"rounded,filled\", fillcolor={_q(color)}];")
            self.lines.append(f"{indent}}}")
        else:
            shape_kw = "ellipse" if label.startswith(f"{e.id}\\ninput") else "box"
            self.lines.append(f"{indent}{_q(name)} [label={_q(label)}, shape={shape_kw}, "
                              f"style=\"rounded,filled\", fillcolor={_q(color)}];")
        for s in srcs:
            self.lines.append(f"{indent}{_q(s)} -> {_q(name)};")
        return name


def _mname(m: Any) -> str:
    return getattr(m, "label", None) or type(m).__name__


def _render(graph: Any, profile: Profile | None) -> str:
    w = _Writer(profile)
    title = graph.label or "graph"
    w.lines += [f"digraph {_q(title)} {{", "  rankdir=TB;", "  compound=true;",
                '  node [fontname="Helvetica", fontsize=10];',
                '  edge [fontname="Helvetica", fontsize=9];']
    inputs = ["input"] + [f"input:{n}" for n in graph.input_names]
    specs = graph._in_specs or ()
    for i, n in enumerate(inputs):
        shape = f"\\n{_shape(specs[i])}" if i < len(specs) else ""
        w.lines.append(f"  {_q(n)} [label={_q(n + shape)}, shape=ellipse];")
    out = w.emit(graph, "", "  ", inputs)
    if profile is not None:
        total = "output\\n" + format_node_time(profile.total)
        w.lines.append(f"  {_q('output')} [label={_q(total)}, shape=ellipse];")
    else:
        w.lines.append(f"  {_q('output')} [shape=ellipse];")
    w.lines.append(f"  {_q(out)} -> {_q('output')};")
    w.lines.append("}")
    return "\n".join(w.lines) + "\n"


def dot(graph: Any) -> str:
    """Graphviz DOT source of a flow graph.

    Args:
        graph: a flow :class:`~modjax.graph.flow.Graph`.

    Returns:
        DOT text (render with ``dot -Tsvg``).

    Example:
        >>> from modjax import Linear
        >>> from modjax.flow import FlowBuilder
        >>> g = FlowBuilder.from_(Linear(2)).tag("out").build(input_shape=(3,))
        >>> src = dot(g)
        >>> src.startswith('digraph "graph"'), '#out' in src
        (True, True)
    """
    return _render(graph, None)


def dot_with_profile(graph: Any, profile: Profile | None = None) -> str:
    """DOT coloured by node time (green -> red) with durations and level clusters.

    Args:
        graph: a flow graph.
        profile: a :class:`~modjax.observe.Profile`; defaults to the graph's last one.

    Returns:
        DOT text; the plain :func:`dot` when no profile exists.
    """
    profile = profile if profile is not None else graph.profile()
    return _render(graph, profile)


def _dot_binary() -> str:
    exe = shutil.which("dot")
    if exe is None:
        raise FileNotFoundError(
            "rendering SVG needs the Graphviz 'dot' binary, which is not on PATH; install "
            "Graphviz (apt install graphviz / brew install graphviz) or use dot(graph) and "
            "render the text elsewhere")
    return exe


def _to_svg(source: str, path: str | Path | None) -> bytes:
    exe = _dot_binary()
    proc = subprocess.run([exe, "-Tsvg"], input=source.encode(), capture_output=True,
                          check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"Graphviz 'dot' failed (exit {proc.returncode}): "
                           f"{proc.stderr.decode(errors='replace')[:500]}")
    if path is not None:
        Path(path).write_bytes(proc.stdout)
    return proc.stdout


def svg(graph: Any, path: str | Path | None = None) -> bytes:
    """SVG of :func:`dot` through the Graphviz ``dot`` binary; also written to ``path``.

    Raises:
        FileNotFoundError: ``dot`` is not installed (the message says how to get it).
    """
    return _to_svg(dot(graph), path)


def svg_with_profile(graph: Any, path: str | Path | None = None,
                     profile: Profile | None = None) -> bytes:
    """SVG of :func:`dot_with_profile`; see :func:`svg`."""
    return _to_svg(dot_with_profile(graph, profile), path)
