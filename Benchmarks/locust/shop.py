"""A mixed shop workload through the gateway, for locust (scripts/bench-mix.sh runs it).

Each simulated shopper browses and searches the catalog, opens products, fills a cart and now and
then checks out, with the weights below. Shoppers sign in with access tokens minted from the
shop's JWT key (BAZAAR_BENCH_JWT_KEY) rather than through the password endpoints: password checks
are deliberately slow (argon2id) and rate limited, and are not what this measures."""
import os
import random
import time
import uuid

import jwt
from locust import FastHttpUser, between, task

KEY = open(os.environ["BAZAAR_BENCH_JWT_KEY"]).read()
WORDS = ["lamp", "mug", "desk", "chair", "green", "office", "kettle", "handmade", "blue", "garden"]
ADDRESS = {"recipient": "Bench", "lines": ["1 Main St"], "city": "London", "postalCode": "N1 9GU", "countryCode": "GB"}


def token(user_id):
    now = int(time.time())
    return jwt.encode({"sub": user_id, "iss": "bazaar", "aud": "bazaar", "iat": now, "nbf": now, "exp": now + 3600,
                       "roles": ["customer"]}, KEY, algorithm="EdDSA")


class Shopper(FastHttpUser):
    wait_time = between(0.01, 0.05)

    def on_start(self):
        self.auth = {"authorization": f"Bearer {token(str(uuid.uuid4()))}"}
        self.products = []
        self.in_cart = 0
        with self.client.get("/v1/products?page.pageSize=50", name="browse", catch_response=True) as r:
            if r.status_code == 200:
                self.products = [p["id"] for p in r.json().get("products", [])]
            else:
                r.failure(f"browse: {r.status_code}")

    @task(30)
    def browse(self):
        category = random.choice(["", "&category=office", "&category=kitchen"])
        self.client.get(f"/v1/products?page.pageSize=20&sort=PRODUCT_SORT_PRICE_ASC{category}", name="browse")

    @task(20)
    def search(self):
        self.client.get(f"/v1/products?query={random.choice(WORDS)}&page.pageSize=10", name="search")

    @task(30)
    def product(self):
        if self.products:
            self.client.get(f"/v1/products/{random.choice(self.products)}", name="product")

    @task(12)
    def add_to_cart(self):
        if self.products:
            body = {"productId": random.choice(self.products), "quantity": 1}
            with self.client.post("/v1/cart/items", json=body, headers=self.auth, name="cart: add",
                                  catch_response=True) as r:
                if r.status_code == 200:
                    self.in_cart += 1
                elif r.status_code == 409 or r.status_code == 400:
                    r.success()  # out of stock: a shopper's answer, not a failure
                else:
                    r.failure(f"cart: {r.status_code}")

    @task(5)
    def view_cart(self):
        self.client.get("/v1/cart", headers=self.auth, name="cart: view")

    @task(3)
    def checkout(self):
        if not self.in_cart:
            return
        body = {"requestId": str(uuid.uuid4()), "shippingAddress": ADDRESS}
        with self.client.post("/v1/orders", json=body, headers=self.auth, name="checkout", catch_response=True) as r:
            if r.status_code in (200, 201):
                self.in_cart = 0
            elif r.status_code in (400, 409):
                self.in_cart = 0
                r.success()  # out of stock at checkout: the shop's answer
            else:
                r.failure(f"checkout: {r.status_code}")
