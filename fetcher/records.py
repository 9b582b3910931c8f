"""The record schema and the status filters: which fields a record has, which ones --fields may
choose, and which records --match-status and --filter-status let through."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .options import ConfigError

TIMING_PHASES = ("dns", "connect", "tls", "ttfb", "total")
# The JSON Lines record, in order: a stable, documented interface (README "JSON Lines").
RECORD_FIELDS = (
    "input", "url", "scheme", "host", "port", "path", "host_ip", "method", "status_code",
    "reason", "http_version", "headers", "timings_ms", "failed", "error", "timestamp", "backend",
    "redirects", "final_url", "attempts",
)  # fmt: skip
# The CSV columns, in order: the record's scalar fields, the nested ones flattened, and the
# headers people grep for most (README "CSV").
CSV_COLUMNS = (
    "input", "url", "scheme", "host", "port", "path", "host_ip", "method", "status_code",
    "reason", "http_version", "content_type", "content_length", "server", "location",
    "redirect_count", "final_url", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms",
    "failed", "error_kind", "error_phase", "error_message", "timestamp", "backend",
)  # fmt: skip
CSV_HEADERS = frozenset({"content_type", "content_length", "server", "location"})


def field_names(format_name: str) -> tuple[str, ...]:
    """The fields --fields may choose from for a format (none for text)."""
    return {"jsonl": RECORD_FIELDS, "csv": CSV_COLUMNS}.get(format_name, ())


def check_fields(format_name: str, fields: tuple[str, ...]) -> None:
    """Raise ConfigError unless every name in `fields` is a field of the format."""
    if not fields:
        return
    known = field_names(format_name)
    if not known:
        raise ConfigError("--fields applies to --format jsonl and csv only")
    unknown = [name for name in fields if name not in known]
    if unknown:
        raise ConfigError(
            f"unknown field {unknown[0]!r} for --format {format_name}"
            f" (choose from {', '.join(known)})"
        )


def parse_names(text: str) -> tuple[str, ...]:
    """``url, status_code,url`` -> the names in the order given, each once."""
    names = (name.strip() for name in text.split(","))
    return tuple(dict.fromkeys(name for name in names if name))


@dataclass(frozen=True, slots=True)
class StatusSet:
    """Status codes and classes such as ``200,3xx``: what --match-status and --filter-status
    take. Empty matches nothing."""

    codes: frozenset[int] = frozenset()
    classes: frozenset[int] = frozenset()  # 3 for 3xx

    @classmethod
    def parse(cls, text: str) -> StatusSet:
        codes: set[int] = set()
        classes: set[int] = set()
        for item in parse_names(text):
            word = item.lower()
            if re.fullmatch(r"[1-5]xx", word):
                classes.add(int(word[0]))
            elif re.fullmatch(r"[1-5][0-9][0-9]", word):
                codes.add(int(word))
            else:
                raise ConfigError(f"invalid status {item!r} (expected e.g. 200, 404 or 3xx)")
        return cls(frozenset(codes), frozenset(classes))

    def __bool__(self) -> bool:
        return bool(self.codes or self.classes)

    def __contains__(self, status: object) -> bool:
        return isinstance(status, int) and (status in self.codes or status // 100 in self.classes)


def shown(status_code: int | None, match: StatusSet, hidden: StatusSet) -> bool:
    """Whether a record with this status (None: a failed fetch) is written to stdout."""
    if match and status_code not in match:
        return False
    return status_code is None or status_code not in hidden
