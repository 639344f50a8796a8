"""Streaming CSV exports, safe to open in a spreadsheet."""


class Echo:
    """A file-like object whose write returns the line, for csv.writer in a streaming body."""

    def write(self, value):
        return value


def csv_cell(value) -> str:
    """Agent-supplied text never starts a formula when the CSV is opened in a spreadsheet."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text
