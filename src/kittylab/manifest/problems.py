"""Problems found in a manifest, and the error that carries them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kittylab.domain.errors import DomainError


@dataclass(frozen=True)
class ManifestProblem:
    """One mistake in a manifest. ``field`` is a dotted path such as ``devices[3].zone``
    (empty for the document as a whole); ``file`` and ``line`` are set by the loader."""

    field: str
    message: str
    file: str | None = None
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<manifest>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return (
            f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"
        )


class ManifestError(DomainError):
    """A manifest broke one or more rules. ``problems`` holds all of them; ``file``,
    ``line``, ``field`` and ``message`` repeat the first, and ``str()`` is one
    ``file:line: field: message`` line per problem."""

    def __init__(self, problems: Sequence[ManifestProblem]) -> None:
        if not problems:
            raise ValueError("a ManifestError needs at least one problem")
        self.problems = tuple(problems)
        first = self.problems[0]
        self.file = first.file
        self.line = first.line
        self.field = first.field
        self.message = first.message
        super().__init__("\n".join(str(p) for p in self.problems))
