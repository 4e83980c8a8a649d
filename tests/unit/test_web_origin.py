"""Which browser origins may hold a passkey ceremony (issue 17)."""

from __future__ import annotations

import pytest

from kittylab.domain.errors import ValidationFailed
from kittylab.domain.web_origin import check_origin


@pytest.mark.parametrize(
    "origin",
    ["http://localhost:8000", "http://localhost", "https://localhost:8443"],
)
def test_localhost_may_use_plain_http_on_any_port(origin: str) -> None:
    assert check_origin(origin, "localhost") == origin


@pytest.mark.parametrize(
    "origin",
    [
        "http://127.0.0.1:8000",  # an address is not the relying party
        "http://lab.example:8000",  # plain HTTP beyond localhost
        "https://evil.example",
        "https://lab.example.evil.example",
        "https://notlab.example",
        None,
        "",
    ],
)
def test_other_origins_are_refused_naming_where_to_go(origin: str | None) -> None:
    with pytest.raises(ValidationFailed) as refused:
        check_origin(origin, "lab.example")
    assert refused.value.field == "origin"


def test_the_lab_host_and_its_subdomains_over_https() -> None:
    assert check_origin("https://lab.example", "lab.example")
    assert check_origin("https://console.lab.example:8443", "lab.example")


def test_configured_origins_are_the_only_ones() -> None:
    configured = ["https://console.lab.example"]
    assert check_origin("https://console.lab.example", "lab.example", configured)
    with pytest.raises(ValidationFailed):
        check_origin("https://lab.example", "lab.example", configured)
