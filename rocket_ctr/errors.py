"""Errors that carry a one-line, user-facing message (the CLI prints them without a traceback)."""
from __future__ import annotations

import re
from typing import Mapping

_PLACEHOLDER = re.compile(r"\{([a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*)\}")


class InputError(ValueError):
    """Bad user input: a file, column, field or option that is not what was expected."""


class FieldError(InputError):
    """Bad input that names fields of a library call or config (``{hint.weight}``, ``{grpc_port}``
    placeholders in ``template``). ``str()`` shows the field names; a front end shows its own
    names for them (the CLI: its flags) with :meth:`render`.

    Args:
        template: the message, fields as ``{name}`` or ``{section.name}`` placeholders.
    """

    def __init__(self, template: str):
        self.template = template
        super().__init__(self.render())

    def render(self, names: Mapping[str, str] | None = None) -> str:
        """The message with each field called ``names.get(field, field)``."""
        return render_fields(self.template, names)


def render_fields(template: str, names: Mapping[str, str] | None = None) -> str:
    """``template`` with ``{field}`` placeholders replaced by ``names.get(field, field)``."""
    return _PLACEHOLDER.sub(lambda m: (names or {}).get(m.group(1), m.group(1)), template)
