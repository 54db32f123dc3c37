"""What an import reports: its counts, the rejected rows, and the error of a malformed file."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ValidationError

MAX_ERRORS_KEPT = 100  # rejected rows kept in ImportResult.errors (all go to the reject file)


class ImportFileError(ValidationError):
    """The file is malformed (encoding, header, columns, CSV or JSON syntax): nothing was imported."""


@dataclass(frozen=True)
class RowError:
    line: int
    column: str | None
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}" + (f", column {self.column}" if self.column else "") + f": {self.reason}"


@dataclass
class ImportResult:
    source: str
    format: str
    rows: int = 0  # data rows read (blank lines not counted)
    imported: int = 0  # new events written to the ledger (pending delivery to Stripe)
    duplicates: int = 0  # rows whose key was in the ledger already (an earlier run, or repeated ids)
    rejected: int = 0
    dry_run: bool = False
    reject_file: str | None = None
    errors: list[RowError] = field(default_factory=list)  # the first MAX_ERRORS_KEPT rejected rows
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    delivery: object | None = None  # usagebill.delivery.Delivery of the push after the import

    @property
    def ok(self) -> bool:
        return self.rejected == 0


