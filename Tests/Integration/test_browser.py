"""The storefront and the back office in a real browser: headless Chromium (Debian's `chromium`
and `chromium-driver`) driven by Selenium, against the edge, the web app and the shop's services
as `make up` runs them. Two browser sessions at once: a shopper and an admin.

Screenshots of the main pages at a phone's and a desktop's width are saved in
.build/artifacts/storefront/ (a test artifact, and where the README's picture comes from)."""
import os
import pathlib
import re
import uuid

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from shop_clients import make_product, set_roles

ARTIFACTS = pathlib.Path(__file__).resolve().parents[2] / ".build" / "artifacts" / "storefront"
# Only a guard against a hang: every wait below ends as soon as what it waits for shows.
PATIENCE = 60
PASSWORD = "a long test password"


@pytest.fixture(scope="module")
def gw(shop):
    return shop.start_gateway("gateway-browser")


def chromium(width=1280, height=900):
    # Selenium must not go looking for a browser on the internet: these are Debian's.
    os.environ["SE_OFFLINE"] = "true"
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size={width},{height}", "--lang=en-US"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.set_page_load_timeout(PATIENCE)
    return driver


@pytest.fixture
def browsers():
    made = []

    def make(**kw):
        d = chromium(**kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.quit()


def wait(driver, condition):
    return WebDriverWait(driver, PATIENCE).until(condition)


def fill(driver, field_id, text):
    field = driver.find_element(By.ID, field_id)
    field.clear()
    field.send_keys(text)


def replaced(element):
    """The page that held `element` is gone. Selenium's `staleness_of` knows only the stale-element
    error; chromedriver may instead answer "Node with given id does not belong to the document"
    while the old document is being torn down (a CI run failed on it), which means the same."""
    def check(_):
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return True
            raise
    return check


def submit(driver, css):
    """Clicks a form's button and waits for the page it leads to."""
    old = driver.find_element(By.TAG_NAME, "html")
    driver.find_element(By.CSS_SELECTOR, css).click()
    wait(driver, replaced(old))


def words(driver):
    return " ".join(driver.find_element(By.TAG_NAME, "main").text.split())


def sign_up(driver, gw, name, email):
    driver.get(gw + "/signup")
    fill(driver, "name", name)
    fill(driver, "email", email)
    fill(driver, "password", PASSWORD)
    submit(driver, "main form button[type=submit]")
    assert "Sign out" in driver.find_element(By.TAG_NAME, "header").text


def sign_in(driver, gw, email):
    driver.get(gw + "/signin")
    fill(driver, "email", email)
    fill(driver, "password", PASSWORD)
    submit(driver, "main form button[type=submit]")
    assert "Sign out" in driver.find_element(By.TAG_NAME, "header").text


def sign_out(driver):
    submit(driver, "header form[action='/signout'] button")


def shoot(driver, name):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def stock_of(admin, m, product_id):
    return admin.call("catalog", "GetProduct", m.catalog.GetProductRequest(id=product_id), m.catalog.Product).stock


def test_a_shopper_buys_and_follows_the_order_live_while_an_admin_ships_it(shop, m, admin, gw, browsers):
    tag = uuid.uuid4().hex[:8]
    # Fourteen products to search, filter and page through (12 a page), 10.00 to 23.00.
    widgets = [make_product(admin, m, name=f"Widget {tag} {n:02d}", price=1000 + 100 * n, stock=20,
                            category=f"w-{tag}") for n in range(14)]

    # The admin: an account like any other, made an admin, then signed in again for the new role.
    staff = browsers()
    admin_email = f"admin-{tag}@example.com"
    sign_up(staff, gw, "Ada Admin", admin_email)
    staff.get(gw + "/admin/")
    assert "Not allowed" in staff.title
    set_roles(admin, m, admin_email, ["customer", "admin"])
    sign_out(staff)
    sign_in(staff, gw, admin_email)

    # The admin creates a product in the back office.
    staff.get(gw + "/admin/products/new")
    fill(staff, "sku", f"LAN-{tag}")
    fill(staff, "name", f"Lantern {tag}")
    fill(staff, "description", "A lantern for long evenings.")
    fill(staff, "price", "19.99")
    fill(staff, "currency", "EUR")
    fill(staff, "stock", "5")
    fill(staff, "categories", f"w-{tag}, lights")
    fill(staff, "attributes", "colour: amber")
    submit(staff, "main form.panel button[type=submit]")
    assert re.search(r"/admin/products/[0-9a-f-]{36}$", staff.current_url), staff.current_url
    lantern_id = staff.current_url.rsplit("/", 1)[1]

    # The shopper signs up, searches, pages, filters, sorts.
    shopper = browsers()
    sign_up(shopper, gw, "Sam Shopper", f"sam-{tag}@example.com")
    fill(shopper, "q", tag)
    submit(shopper, "header form.search button")
    assert len(shopper.find_elements(By.CSS_SELECTOR, "main .grid .card")) == 12
    submit(shopper, "a[rel=next]")
    assert len(shopper.find_elements(By.CSS_SELECTOR, "main .grid .card")) == 3
    fill(shopper, "min", "12")
    fill(shopper, "max", "20")
    Select(shopper.find_element(By.NAME, "sort")).select_by_value("price-asc")
    submit(shopper, "form.filters button")
    prices = [c.find_element(By.CLASS_NAME, "price").text for c in shopper.find_elements(By.CSS_SELECTOR, ".grid .card")]
    assert prices == [f"€{n}.00" for n in range(12, 20)] + ["€19.99", "€20.00"], prices
    assert f"Lantern {tag}" in words(shopper)

    # Opens the admin's new product and puts it in the cart, then a widget.
    submit(shopper, f"a[href='/products/{lantern_id}']")
    assert "colour amber" in words(shopper) and "€19.99" in words(shopper)
    submit(shopper, "form.buy button")
    assert shopper.current_url.endswith("/cart")
    shopper.get(f"{gw}/products/{widgets[2].id}")
    submit(shopper, "form.buy button")
    # Two of the widget (12.00 each).
    fill(shopper, f"qty-{widgets[2].id}", "2")
    submit(shopper, f"form:has(#qty-{widgets[2].id}) button")
    assert shopper.find_element(By.ID, "subtotal").text == "€43.99"
    shoot(shopper, "desktop-cart")

    # Checks out with the approved test card.
    submit(shopper, "a[href='/checkout']")
    fill(shopper, "line1", "1 Analytical Street")
    fill(shopper, "city", "London")
    fill(shopper, "postal_code", "N1 1AA")
    fill(shopper, "country", "gb")
    submit(shopper, "form[action='/checkout'] button[type=submit]")
    order_id = re.search(r"/orders/([0-9a-f-]{36})", shopper.current_url).group(1)
    assert "your order is placed" in words(shopper)
    status = shopper.find_element(By.ID, "order-status")
    assert status.text == "Paid"
    shoot(shopper, "desktop-order")

    # The admin ships it, then delivers it; the shopper's page, never reloaded, follows.
    staff.get(gw + "/admin/orders?status=paid")
    submit(staff, f"a[href='/admin/orders/{order_id}']")
    submit(staff, "form[action$='/status'] button")
    wait(shopper, EC.text_to_be_present_in_element((By.ID, "order-status"), "Shipped"))
    submit(staff, "form[action$='/status'] button")
    wait(shopper, EC.text_to_be_present_in_element((By.ID, "order-status"), "Delivered"))
    assert "Delivered" in words(staff)

    # A declined card: the message shows, the cart stays, the stock comes back.
    before = stock_of(admin, m, widgets[5].id)
    shopper.get(f"{gw}/products/{widgets[5].id}")
    submit(shopper, "form.buy button")
    shopper.get(gw + "/checkout")
    fill(shopper, "line1", "1 Analytical Street")
    fill(shopper, "city", "London")
    fill(shopper, "postal_code", "N1 1AA")
    fill(shopper, "country", "GB")
    shopper.find_element(By.ID, "pay-tok_declined").click()
    submit(shopper, "form[action='/checkout'] button[type=submit]")
    problem = shopper.find_element(By.CSS_SELECTOR, ".problem").text
    assert "declined" in problem and "cancelled" in problem, problem
    assert stock_of(admin, m, widgets[5].id) == before

    # The order history and the notifications the orders sent.
    shopper.get(gw + "/orders")
    assert order_id[:8] in words(shopper) and "Delivered" in words(shopper)
    def notified(d):
        d.get(gw + "/notifications")
        return f"Order {order_id[:8]} delivered" in words(d)
    wait(shopper, notified)

    # Screenshots at a phone's width and a desktop's.
    for width, height, label in [(390, 844, "phone"), (1280, 900, "desktop")]:
        shopper.set_window_size(width, height)
        for page, path in [("home", "/"), ("search", f"/search?q={tag}"), ("product", f"/products/{lantern_id}"),
                           ("orders", "/orders")]:
            shopper.get(gw + path)
            shoot(shopper, f"{label}-{page}")
        # Nothing is wider than the screen.
        assert shopper.execute_script("return document.documentElement.scrollWidth") <= width + 1, label
    staff.get(f"{gw}/admin/orders/{order_id}")
    shoot(staff, "desktop-admin-order")


def test_the_keyboard_reaches_every_form_and_every_page_is_labelled(gw, browsers):
    driver = browsers()
    driver.get(gw + "/signup")
    # Tab from the top: the skip link first, then the search box, on to the form's fields.
    body = driver.find_element(By.TAG_NAME, "body")
    body.send_keys("\ue004")  # Tab
    assert driver.switch_to.active_element.text == "Skip to content"
    seen = []
    for _ in range(20):
        driver.switch_to.active_element.send_keys("\ue004")
        seen.append(driver.switch_to.active_element.get_attribute("id") or driver.switch_to.active_element.text)
    assert {"q", "name", "email", "password"} <= set(seen), seen
    for path in ["/", "/signin", "/signup", "/cart", "/search?q=x"]:
        driver.get(gw + path)
        for field in driver.find_elements(By.CSS_SELECTOR, "input:not([type=hidden]), select, textarea"):
            fid = field.get_attribute("id")
            labelled = (fid and driver.find_elements(By.CSS_SELECTOR, f"label[for='{fid}']")) or \
                field.find_elements(By.XPATH, "ancestor::label")
            assert labelled, (path, field.get_attribute("name"))
        for img in driver.find_elements(By.TAG_NAME, "img"):
            assert img.get_attribute("alt") is not None, path
