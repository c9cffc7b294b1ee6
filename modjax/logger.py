"""The ``modjax`` logger: quiet by default (WARNING), one line per event at INFO.

Events such as an EarlyStopping stop or a restore of best variables are logged at
INFO. To see them::

    import logging
    logging.basicConfig()                      # any handler on the root logger
    logging.getLogger("modjax").setLevel(logging.INFO)
"""

from __future__ import annotations

import logging

__all__ = ["logger", "get_logger"]

logger = logging.getLogger("modjax")
logger.addHandler(logging.NullHandler())  # a library never configures output itself
if logger.level == logging.NOTSET:
    logger.setLevel(logging.WARNING)


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``modjax`` logger or a child (``get_logger("train")`` -> ``modjax.train``).

    Example:
        >>> get_logger("train").name, get_logger().getEffectiveLevel() == logging.WARNING
        ('modjax.train', True)
    """
    return logger if not name else logger.getChild(name)
