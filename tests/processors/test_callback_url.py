"""callback_url is parsed at validation with the parser the webhook delivery uses (issue 29, point 2).

Pure rules: a URL the gateway accepts must be one httpx can POST to.
"""

from __future__ import annotations

import httpx
import pytest

from processors.policy import DEFAULT_POLICY
from processors.rules import Rejection, callback_url_problem, validate
from streams.records import ExecutionRequest


def _verdict(url: str) -> ExecutionRequest | Rejection:
    request = ExecutionRequest(id="cb-1", language="python", code="print(1)", callback_url=url)
    return validate(request, DEFAULT_POLICY, {"python"})


@pytest.mark.parametrize(
    "url",
    [
        "http://[::1/",  # the review's example: InvalidURL at delivery
        "http://[zz]/",
        "http://exa\x00mple.com/",
        "http:///no-host",
        "http://host:99999/",
        "ftp://host/",
        "https://a b/",
        "HTTP//host",
    ],
)
def test_a_url_the_delivery_could_not_use_is_refused_naming_callback_url(url: str) -> None:
    verdict = _verdict(url)
    assert isinstance(verdict, Rejection), verdict
    assert (verdict.code, verdict.field) == ("invalid_callback_url", "callback_url")
    assert verdict.message.startswith("callback_url ")


@pytest.mark.parametrize(
    "url", ["https://hooks.example.com/x?y=1", "http://[::1]:8080/cb", "http://127.0.0.1:9/", "https://h.example"]
)
def test_a_url_httpx_parses_is_accepted(url: str) -> None:
    verdict = _verdict(url)
    assert isinstance(verdict, ExecutionRequest), verdict
    assert verdict.callback_url == url
    assert callback_url_problem(url) is None
    httpx.URL(url)  # and the delivery's parser agrees


def test_every_refused_url_names_why() -> None:
    problem = callback_url_problem("http://[::1/")
    assert problem is not None and "not a valid URL" in problem
