"""Errors that name the request field at fault, raised by processing and turned into a 422 by the API."""

from __future__ import annotations

from typing import Sequence


class FieldError(ValueError):
    """A value of ``field`` that cannot be used; ``choices`` lists the accepted values when there is a list."""

    def __init__(self, field: str, message: str, choices: Sequence[str] | None = None) -> None:
        self.field = field
        self.choices = list(choices) if choices is not None else None
        text = f"{field}: {message}"
        if self.choices:
            text += "; choose one of: " + ", ".join(self.choices)
        super().__init__(text)
