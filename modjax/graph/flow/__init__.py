"""The flow graph implementation (FlowBuilder, Graph, nodes, modules, routers, graph tree).

Its public names are in :mod:`modjax.flow`; this package exports nothing itself.
"""

__all__: list[str] = []
