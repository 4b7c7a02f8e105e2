"""The storefront through the real edge: `bazaar gateway` in front of `bazaar serve web` and the
shop's services on PostgreSQL. Pages are parsed as HTML; the browser journeys come with the
headless Chromium suite."""
from html.parser import HTMLParser
import re
import urllib.parse
import uuid

import pytest

from abuse import wait_for
from shop_clients import http, make_product, set_roles

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


class Visitor:
    """A browser without a browser: keeps its cookies, does not follow redirects, and parses
    every page it gets as HTML."""

    def __init__(self, gw):
        u = urllib.parse.urlsplit(gw)
        self.host, self.port, self.cookies, self.set_cookies = u.hostname, u.port, {}, []

    def send(self, method, path, form=None, csrf=True):
        import http.client
        c = http.client.HTTPConnection(self.host, self.port, timeout=30)
        headers = {"accept": "text/html"}
        if self.cookies:
            headers["cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        body = None
        if form is not None:
            form = dict(form)
            if csrf:
                form.setdefault("_csrf", self.token)
            body = urllib.parse.urlencode(form)
            headers["content-type"] = "application/x-www-form-urlencoded"
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        text = r.read().decode()
        c.close()
        for name, value in r.getheaders():
            if name.lower() == "set-cookie":
                self.set_cookies.append(value)
                k, v = value.split(";")[0].split("=", 1)
                if "Max-Age=0" in value:
                    self.cookies.pop(k, None)
                else:
                    self.cookies[k] = v
        headers = {k.lower(): v for k, v in r.getheaders()}
        if r.status < 300 or r.status >= 400:
            assert "script-src 'self'" in headers.get("content-security-policy", ""), (path, headers)
            if method != "HEAD" and headers.get("content-type", "").startswith("text/html"):
                parsed = Page(text)
                assert not parsed.problems, (path, parsed.problems)
                tokens = re.findall(r'name="_csrf" value="([^"]+)"', text)
                if tokens:
                    self.token = tokens[0]
        return r.status, headers, text

    def back_office(self):
        return self.send("GET", "/admin/")[0]

    def sign_up(self, email, password="a long test password"):
        self.send("GET", "/signup")
        status, headers, _ = self.send("POST", "/signup", {"name": "Vi Sitor", "email": email, "password": password})
        assert status == 303, status
        self.send("GET", "/")
        return self


def test_forms_need_their_token_and_cookies_carry_the_safe_attributes(gw):
    v = Visitor(gw)
    v.send("GET", "/signin")
    # The form cookie: HttpOnly, SameSite=Lax, not Secure over plain HTTP.
    form_cookie = [c for c in v.set_cookies if c.startswith("bz_csrf=")][0]
    assert "HttpOnly" in form_cookie and "SameSite=Lax" in form_cookie and "Path=/" in form_cookie
    email = f"v-{uuid.uuid4().hex[:8]}@example.com"
    status, _, body = v.send("POST", "/signup", {"name": "X", "email": email, "password": "a long test password"},
                             csrf=False)
    assert status == 403 and "did not come from this shop" in body
    assert "bz_session" not in v.cookies
    v.sign_up(email)
    session_cookie = [c for c in v.set_cookies if c.startswith("bz_session=")][0]
    assert all(a in session_cookie for a in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="])
    # Signed in: a post with the visitor's old token, or none, is refused and changes nothing.
    status, _, _ = v.send("POST", "/account/profile", {"name": "Changed", "_csrf": "forged"})
    assert status == 403
    status, _, page_ = v.send("GET", "/account")
    assert "Changed" not in page_
    status, headers, _ = v.send("POST", "/account/profile", {"name": "Changed"})
    assert status == 303 and headers["location"] == "/account"
    assert "Changed" in v.send("GET", "/account")[2]
    # A signed-in page is never cached.
    assert v.send("GET", "/")[1]["cache-control"] == "no-store"


def test_the_back_office_is_refused_to_customers_and_visitors(gw):
    visitor = Visitor(gw)
    status, headers, _ = visitor.send("GET", "/admin/products")
    assert status == 303 and headers["location"] == "/signin?next=%2Fadmin%2Fproducts"
    customer = Visitor(gw).sign_up(f"c-{uuid.uuid4().hex[:8]}@example.com")
    for path in ["/admin/", "/admin/products", "/admin/products/new", "/admin/orders", "/admin/customers",
                 "/admin/insights"]:
        status, _, body = customer.send("GET", path)
        assert status == 403 and "for the shop" in body, path
    status, _, _ = customer.send("POST", "/admin/products", {"sku": "X", "name": "X", "price": "1", "stock": "1",
                                                             "currency": "EUR"})
    assert status == 403


def test_every_page_answers_get_and_head_with_html_and_no_5xx(shop, m, admin, gw):
    p = make_product(admin, m, name=f"Page {uuid.uuid4().hex[:8]}", price=500, stock=2)
    customer = Visitor(gw).sign_up(f"p-{uuid.uuid4().hex[:8]}@example.com")
    unknown = "00000000-0000-0000-0000-000000000000"
    paths = ["/", "/search?q=page", f"/products/{p.id}", f"/products/{unknown}", "/products/not-an-id",
             "/categories/test", "/signin", "/signup", "/account", "/cart", "/checkout", "/orders",
             f"/orders/{unknown}", "/orders/not-an-id", "/notifications", "/nothing/here"]
    for who in [Visitor(gw), customer]:
        for path in paths:
            for method in ["GET", "HEAD"]:
                status, headers, _ = who.send(method, path)
                assert status < 500, (path, method, status)
                if status < 300:
                    assert headers["content-type"] == "text/html; charset=utf-8", path
    assert customer.send("GET", f"/orders/{unknown}")[0] == 404
    assert customer.send("GET", "/orders/not-an-id")[0] in (400, 404)


def staff(m, admin, gw):
    """A signed-in browser of an account just made an admin: the new role reaches its session with
    the web app's next revocation poll, which the first back-office page that opens shows."""
    email = f"a-{uuid.uuid4().hex[:8]}@example.com"
    v = Visitor(gw).sign_up(email)
    set_roles(admin, m, email, ["customer", "admin"])
    wait_for("the admin role reaching the web session", lambda: v.back_office() == 200)
    return v


def test_a_role_change_reaches_a_signed_in_browser_without_signing_in_again(m, admin, gw):
    """The web app follows the accounts service's token revocations as the gateway does: a new
    role voids the session's access token, and the next page refreshes it (with the new role)."""
    email = f"r-{uuid.uuid4().hex[:8]}@example.com"
    v = Visitor(gw).sign_up(email)
    assert v.back_office() == 403
    set_roles(admin, m, email, ["customer", "admin"])
    wait_for("the new role reaching the web session", lambda: v.back_office() == 200)
    # And back: the role taken away is refused again, still without signing in.
    set_roles(admin, m, email, ["customer"])
    wait_for("the removed role leaving the web session", lambda: v.back_office() == 403)


def test_every_back_office_page_answers_an_admin_with_html_and_no_5xx(m, admin, gw):
    v = staff(m, admin, gw)
    unknown = "00000000-0000-0000-0000-000000000000"
    expected = {"/admin/": 200, "/admin/products": 200, "/admin/products?q=lamp": 200, "/admin/products/new": 200,
                f"/admin/products/{unknown}": 404, "/admin/orders": 200, "/admin/orders?status=paid": 200,
                "/admin/orders?status=sideways": 400, f"/admin/orders/{unknown}": 404, "/admin/customers": 200,
                "/admin/insights": 200, "/admin/nothing": 404}
    for path, status in expected.items():
        for method in ["GET", "HEAD"]:
            assert v.send(method, path)[0] == status, (path, method)
    # A form with a bad value is answered with the form again and what is wrong, not an error page.
    status, _, body = v.send("POST", "/admin/products", {"sku": "X-1", "name": "X", "price": "twelve",
                                                         "currency": "EUR", "stock": "1"})
    assert status == 400 and "The price must be an amount" in body and 'value="X-1"' in body


def test_editing_a_product_in_the_back_office_keeps_the_stock_sold_meanwhile_and_its_archive(m, admin, gw):
    p = make_product(admin, m, name=f"Edit {uuid.uuid4().hex[:8]}", price=700, stock=10)
    v = staff(m, admin, gw)
    _, _, form_page = v.send("GET", f"/admin/products/{p.id}")
    fields = dict(re.findall(r'name="(\w+)"[^>]*value="([^"]*)"', form_page))
    assert fields["stock"] == "10" and fields["stock_was"] == "10"
    # Three sell while the form is open (the admin sets the stock through the API here).
    upd = m.catalog.UpdateProductRequest(product=m.catalog.Product(id=p.id, stock=7))
    upd.update_mask.paths.append("stock")
    admin.call("catalog", "UpdateProduct", upd, m.catalog.Product)
    form = {k: fields.get(k, "") for k in ["sku", "currency", "price", "stock", "stock_was", "categories"]}
    form.update(name="Edited name", description="new words", images="/static/demo/blue-1.svg")
    status, headers, _ = v.send("POST", f"/admin/products/{p.id}", form)
    assert status == 303, status
    after = admin.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=p.id), m.catalog.Product)
    assert after.name == "Edited name" and after.stock == 7 and list(after.image_urls) == ["/static/demo/blue-1.svg"]
    # An archived product stays archived when edited.
    assert v.send("POST", f"/admin/products/{p.id}/archive", {})[0] == 303
    assert v.send("POST", f"/admin/products/{p.id}", form)[0] == 303
    assert not admin.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=p.id), m.catalog.Product).active
    # Changing the stock on the form does set it.
    form.update(stock="25")
    assert v.send("POST", f"/admin/products/{p.id}", form)[0] == 303
    assert admin.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=p.id), m.catalog.Product).stock == 25
