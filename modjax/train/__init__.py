"""modjax.train."""

__all__: list[str] = []
