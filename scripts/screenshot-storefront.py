#!/usr/bin/env python3
"""Takes the README's picture of the storefront from the shop `make up` runs:
    .venv/bin/python scripts/screenshot-storefront.py [BASE_URL] [OUT.png]
(defaults http://127.0.0.1:8080 and docs/images/storefront.png). Headless Chromium, signed in as
the demo customer, at a desktop width, showing the home page."""
import os
import sys

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

base = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
out = sys.argv[2] if len(sys.argv) > 2 else "docs/images/storefront.png"
os.environ["SE_OFFLINE"] = "true"
options = Options()
options.binary_location = "/usr/bin/chromium"
for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,860",
             "--hide-scrollbars"]:
    options.add_argument(flag)
driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
try:
    driver.get(base + "/signin")
    driver.find_element(By.ID, "email").send_keys("customer@bazaar.local")
    driver.find_element(By.ID, "password").send_keys("customer-pass-123")
    driver.find_element(By.CSS_SELECTOR, "main form button[type=submit]").click()
    driver.get(base + "/")
    driver.save_screenshot(out)
    print(f"screenshot-storefront: {out}")
finally:
    driver.quit()
