"""modjax.viz."""

__all__: list[str] = []
