"""The record schema and the filters: which fields a record has, which ones --fields may choose,
and which records --match-status, --filter-status and --min-grade let through."""

from __future__ import annotations

import re
from dataclasses import dataclass

from .options import ConfigError

TIMING_PHASES = ("dns", "connect", "tls", "ttfb", "total")
# The JSON Lines record, in order: a stable, documented interface (README "JSON Lines").
RECORD_FIELDS = (
    "input", "url", "scheme", "host", "port", "path", "host_ip", "method", "status_code",
    "reason", "http_version", "headers", "timings_ms", "failed", "error", "timestamp", "backend",
    "redirects", "final_url", "attempts", "tls", "audit",
)  # fmt: skip
# The CSV columns, in order: the record's scalar fields, the nested ones flattened, and the
# headers people grep for most (README "CSV").
CSV_COLUMNS = (
    "input", "url", "scheme", "host", "port", "path", "host_ip", "method", "status_code",
    "reason", "http_version", "content_type", "content_length", "server", "location",
    "redirect_count", "final_url", "dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "total_ms",
    "failed", "error_kind", "error_phase", "error_message", "timestamp", "backend",
    "tls_version", "cert_subject_cn", "cert_issuer_cn", "cert_not_after", "cert_days_left",
    "tls_verified",
    "audit_grade", "audit_score",
)  # fmt: skip
CSV_HEADERS = frozenset({"content_type", "content_length", "server", "location"})
# The brackets of --format line, in order (README "One line per target"); --fields picks some.
LINE_FIELDS = (
    "server", "content_type", "content_length", "host_ip", "total_ms", "redirect_count",
    "tls_expiry", "audit_grade",
)  # fmt: skip


def field_names(format_name: str) -> tuple[str, ...]:
    """The fields --fields may choose from for a format (none for text)."""
    return {"jsonl": RECORD_FIELDS, "csv": CSV_COLUMNS, "line": LINE_FIELDS}.get(format_name, ())


def check_fields(format_name: str, fields: tuple[str, ...]) -> None:
    """Raise ConfigError unless every name in `fields` is a field of the format."""
    if not fields:
        return
    known = field_names(format_name)
    if not known:
        raise ConfigError("--fields applies to --format line, jsonl and csv only")
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


def graded_below(grade: str | None, floor: str) -> bool:
    """--min-grade: whether `grade` is worse than `floor`; an ungraded record (a failure) is
    not."""
    from .audit import GRADES  # loaded already: --min-grade needs --audit

    return grade is not None and GRADES.index(grade) > GRADES.index(floor)


def shown(status_code: int | None, match: StatusSet, hidden: StatusSet) -> bool:
    """Whether a record with this status (None: a failed fetch) is written to stdout."""
    if match and status_code not in match:
        return False
    return status_code is None or status_code not in hidden
