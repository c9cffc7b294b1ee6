"""modjax.observe."""

__all__: list[str] = []
