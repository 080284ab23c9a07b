"""JSON log lines: one object per line with time, level, logger, message and the record's `fields`."""

import json
import logging
import sys
import time


class JsonFormatter(logging.Formatter):
    def __init__(self, static_fields: dict | None = None):
        super().__init__()
        self.static_fields = static_fields or {}  # on every line, e.g. which worker process wrote it

    def format(self, record: logging.LogRecord) -> str:
        line = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        line.update(self.static_fields)
        line.update(getattr(record, "fields", {}))
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def configure(level: str = "INFO", stream=None, static_fields: dict | None = None) -> None:
    """Send every log record to `stream` (stderr) as JSON; called once by serve(), never at import."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter(static_fields))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
