"""structlog loggers that hand their records to the standard library's ``logging``.

The library never configures logging on import: every record goes to
``logging.getLogger(name)`` with its context as LogRecord attributes (``executor_id``,
``key``, ...), so it obeys whatever configuration the application has.
:func:`configure_logging` is the one explicit opt-in for scripts and the CLI.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

__all__ = ["configure_logging", "get_logger"]

_PROCESSORS: list[Any] = [
    structlog.stdlib.filter_by_level,
    structlog.stdlib.render_to_log_kwargs,
]


def get_logger(name: str, **context: Any) -> structlog.stdlib.BoundLogger:
    """A logger for module ``name`` with ``context`` bound to every record."""
    logger: structlog.stdlib.BoundLogger = structlog.wrap_logger(
        logging.getLogger(name),
        processors=_PROCESSORS,
        wrapper_class=structlog.stdlib.BoundLogger,
    )
    return logger.bind(**context) if context else logger


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Marks the handler configure_logging() installed, so a second call replaces it."""


def configure_logging(json: bool = False, level: int | str = "INFO") -> None:
    """Send log records to stderr, rendered by structlog, from ``level`` up.

    For scripts and the command line; libraries should leave logging to the application.
    Calling it again replaces the handler it installed before.

    :param json: one JSON object a line instead of the human-readable console format.
    :param level: a logging level name (``"DEBUG"``, ``"INFO"``, ...) or number.
    :raises ValueError: for an unknown level name.
    """
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if not isinstance(number, int):
            raise ValueError(
                f"unknown logging level {level!r}; use DEBUG, INFO, WARNING, ERROR or CRITICAL"
            )
        level = number
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    handler = _Handler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processor=renderer,
            foreign_pre_chain=[
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                structlog.processors.TimeStamper(fmt="iso"),
                structlog.stdlib.ExtraAdder(),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
