"""Logging set-up: the service's loggers write one line per record to standard error, as JSON
(python-json-logger with orjson, one object per line) or as text, as BORDERWATCH_LOG_FORMAT
says.

Every record logged inside a request carries its `request_id`. The request lines themselves
(logger `borderwatch.requests`, app/observe/middleware.py) replace uvicorn's access log, which
is quietened; uvicorn's own lines are written in the same format.
"""

from __future__ import annotations

import logging
import sys
from typing import Literal

from pythonjsonlogger.orjson import OrjsonFormatter

from app.config import Settings
from app.observe.context import request_id

LogFormat = Literal["json", "text"]
# the fields of a request line beside the message (app/observe/middleware.py)
REQUEST_FIELDS = ("request_id", "principal_id", "route", "method", "status", "duration_ms")
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_OURS = "_borderwatch_handler"  # marks the handler this module installed
# the service's loggers: `borderwatch` (and its requests line) and the modules' own (`app.…`)
LOGGERS = ("borderwatch", "app")


class RequestIdFilter(logging.Filter):
    """Adds the current request's id to a record that has none (logged inside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Always keep the record; give it `request_id` when a request is running."""
        if not hasattr(record, "request_id"):
            rid = request_id.get()
            if rid is not None:
                record.request_id = rid
        return True


class TextFormatter(logging.Formatter):
    """The classic line, with the request's id and principal after the message."""

    def format(self, record: logging.LogRecord) -> str:
        """The line, then ` request_id=… principal_id=…` when the record has them."""
        line = super().format(record)
        rid = getattr(record, "request_id", None)
        if rid is not None:
            line += f" request_id={rid}"
            principal = getattr(record, "principal_id", None)
            if principal is not None:
                line += f" principal_id={principal}"
        return line


def formatter(fmt: LogFormat) -> logging.Formatter:
    """The formatter of one format."""
    if fmt == "json":
        # orjson's encoder: half the time of the json module's for a request line
        return OrjsonFormatter(
            ["levelname", "name", "message"],
            timestamp="time",  # ISO 8601 in UTC
            rename_fields={"levelname": "level", "name": "logger"},
        )
    return TextFormatter(TEXT)


def log_format(settings: Settings) -> LogFormat:
    """BORDERWATCH_LOG_FORMAT, or by default json (text in the test environment)."""
    if settings.log_format is not None:
        return settings.log_format
    return "text" if settings.environment == "test" else "json"


def configure(settings: Settings) -> None:
    """Set up the service's loggers (again on every call: the last app's settings win).

    In the test environment, unless BORDERWATCH_LOG_FORMAT is set, no handler is added: pytest
    (or whoever runs the app) captures the records, which reach the root logger."""
    own = settings.environment != "test" or settings.log_format is not None
    fmt = formatter(log_format(settings))
    for name in LOGGERS:
        logger = logging.getLogger(name)
        logger.setLevel(logging.INFO)
        for handler in [h for h in logger.handlers if getattr(h, _OURS, False)]:
            logger.removeHandler(handler)
        logger.propagate = not own  # else a root handler set by someone else would repeat it
        if own:
            handler = logging.StreamHandler(sys.stderr)
            handler.setFormatter(fmt)
            handler.addFilter(RequestIdFilter())
            setattr(handler, _OURS, True)
            logger.addHandler(handler)
    if own:
        # our request line says what uvicorn's access line says, and more
        logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
        for name in ("uvicorn", "uvicorn.error"):
            for other in logging.getLogger(name).handlers:
                other.setFormatter(fmt)
