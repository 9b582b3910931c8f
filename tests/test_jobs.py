"""Input lines -> jobs: --ports expansion, --resume skipping, and the count the progress line
shows, which must be the number of jobs (and so of records) a line makes."""

from __future__ import annotations

from collections import Counter

from conftest import make_config
from hypothesis import given, settings
from hypothesis import strategies as st

from fetcher.errors import InvalidInput
from fetcher.jobs import Job, Jobs
from fetcher.resume import Recorded, _key
from fetcher.targets import Target


def targets(jobs: list[Job]) -> list[str]:
    return [job.target.url if isinstance(job.target, Target) else "invalid" for job in jobs]


def test_a_bare_host_makes_one_job_per_port_in_order() -> None:
    jobs = list(Jobs(make_config(ports=(80, 443, 8080))).of("example.com"))
    assert targets(jobs) == [
        "http://example.com/", "http://example.com:443/", "http://example.com:8080/",
    ]  # fmt: skip
    assert all(job.expanded and job.line == "example.com" for job in jobs)


def test_a_line_naming_its_port_or_scheme_is_one_job() -> None:
    config = make_config(ports=(80, 443))
    assert targets(list(Jobs(config).of("example.com:81"))) == ["http://example.com:81/"]
    assert targets(list(Jobs(config).of("https://example.com"))) == ["https://example.com/"]


def test_an_invalid_line_is_one_job_carrying_its_error() -> None:
    [job] = Jobs(make_config(ports=(80, 443))).of("not a host")
    assert isinstance(job.target, InvalidInput) and not job.expanded


def test_scheme_auto_starts_bare_hosts_on_https() -> None:
    [job] = Jobs(make_config(scheme="auto")).of("example.com")
    assert isinstance(job.target, Target) and job.target.url == "https://example.com/"


def test_resume_skips_what_is_recorded_port_by_port() -> None:
    ports = Counter({_key("a.example", 443): 1})
    recorded = Recorded(Counter({_key("a.example"): 1, _key("bad line"): 1}), ports)
    jobs = Jobs(make_config(ports=(80, 443)), recorded)
    assert targets(list(jobs.of("a.example"))) == ["http://a.example/"]
    assert list(jobs.of("bad line")) == []
    assert targets(list(jobs.of("bad line"))) == ["invalid"]  # each record answers once


LINES = st.one_of(
    st.sampled_from(["example.com", "example.com:81", "https://x.example/p", "[::1]", "a b"]),
    st.text(alphabet="ab.:/[]1 ", max_size=12),
)


@settings(max_examples=300, deadline=None)
@given(line=LINES, ports=st.lists(st.integers(1, 65535), max_size=4, unique=True))
def test_the_count_is_the_number_of_jobs(line: str, ports: list[int]) -> None:
    jobs = Jobs(make_config(ports=tuple(ports)))
    assert jobs.count(line) == len(list(jobs.of(line)))
