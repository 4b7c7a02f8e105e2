"""The storefront through the real edge: `bazaar gateway` in front of `bazaar serve web` and the
shop's services on PostgreSQL. Pages are parsed as HTML; the browser journeys come with the
headless Chromium suite."""
from html.parser import HTMLParser
import urllib.parse
import uuid

import pytest

from shop_clients import http, make_product

VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Page(HTMLParser):
    """Parses a page and checks that every element it opens is closed in order."""

    def __init__(self, text):
        super().__init__(convert_charrefs=True)
        self.stack, self.problems, self.text, self.links = [], [], [], []
        self.feed(text)
        self.close()
        if self.stack:
            self.problems.append(f"never closed: {self.stack}")

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.links.append(dict(attrs).get("href"))
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.problems.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
            return
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)

    @property
    def words(self):
        return " ".join("".join(self.text).split())


@pytest.fixture(scope="module")
def gw(shop):
    return shop.start_gateway("gateway-storefront")


def page(gw, path, method="GET"):
    status, headers, body = http(gw, method, path, headers={"accept": "text/html"})
    assert status < 500, (path, status, body)
    if method == "HEAD":
        assert not body
        return status, headers, None
    assert headers["content-type"] == "text/html; charset=utf-8", (path, headers)
    assert "script-src 'self'" in headers["content-security-policy"], path
    assert headers["x-content-type-options"] == "nosniff"
    parsed = Page(body)
    assert not parsed.problems, (path, parsed.problems)
    assert body.startswith("<!doctype html>")
    return status, headers, parsed


def test_pages_render_the_catalog_and_escape_what_it_holds(shop, m, admin, gw):
    tag = uuid.uuid4().hex[:8]
    evil = make_product(admin, m, name=f"<script>alert(1)</script> {tag}", price=1250, stock=3, category=f"c-{tag}")
    plain = make_product(admin, m, name=f"Kite {tag}", price=2000, stock=0, category=f"c-{tag}")

    status, _, home = page(gw, "/")
    assert status == 200 and "Welcome to Bazaar" in home.words

    status, _, found = page(gw, "/search?" + urllib.parse.urlencode({"q": tag, "sort": "price-asc"}))
    assert status == 200
    # The name is text on the page: parsed back it is the same string, and no script element exists.
    assert f"<script>alert(1)</script> {tag}" in found.words
    assert found.words.index("<script>") < found.words.index(f"Kite {tag}")
    status, _, raw = http(gw, "GET", "/search?q=" + tag)
    assert "<script>alert" not in raw and "&lt;script&gt;alert(1)&lt;/script&gt;" in raw

    status, _, product = page(gw, f"/products/{evil.id}")
    assert status == 200 and "€12.50" in product.words and "Only 3 left" in product.words
    status, _, kite = page(gw, f"/products/{plain.id}")
    assert "Out of stock" in kite.words

    status, _, category = page(gw, f"/categories/c-{tag}")
    assert status == 200 and f"Kite {tag}" in category.words

    status, _, cheap = page(gw, "/search?" + urllib.parse.urlencode({"q": tag, "max": "15"}))
    assert f"Kite {tag}" not in cheap.words and tag in cheap.words

    stylesheet = [line for line in raw.splitlines() if 'rel="stylesheet"' in line][0].split('href="')[1].split('"')[0]
    status, headers, css = http(gw, "GET", stylesheet)
    assert status == 200 and headers["content-type"].startswith("text/css") and "immutable" in headers["cache-control"]


def test_unknown_pages_are_html_and_unknown_api_paths_stay_json(gw):
    for path in ["/products/00000000-0000-0000-0000-000000000000", "/no/such/page", "/static/nope.css"]:
        status, _, _ = page(gw, path)
        assert status == 404, path
    status, _, _ = page(gw, "/search?min=abc")
    assert status == 400
    status, headers, body = http(gw, "GET", "/v1/no-such-route")
    assert status == 404 and headers["content-type"] == "application/json" and body["code"] == 5
    for path in ["/", "/search?q=x"]:
        status, _, _ = page(gw, path, method="HEAD")
        assert status == 200
    status, headers, _ = page(gw, "/", method="POST")
    assert status == 405
