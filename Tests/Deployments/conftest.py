"""Fixtures the container tests share: the image (built once per test run) and the local
stand-ins for the registry images compose.yaml names."""
import subprocess

import pytest

from deploy_fixtures import IMAGE_TAG, ROOT, podman_usable


@pytest.fixture(scope="session")
def image():
    why = podman_usable()
    if why:
        pytest.skip(why)
    build = subprocess.run(["bash", "deployments/container/build.sh", IMAGE_TAG], cwd=ROOT, capture_output=True,
                           text=True, timeout=1800)
    assert build.returncode == 0, f"image build failed:\n{build.stdout}\n{build.stderr}"
    return IMAGE_TAG


@pytest.fixture(scope="session")
def compose_images(image):
    """compose.yaml's images: ours, and PostgreSQL, Redis and a mail sink built from Debian's
    packages (no registry here)."""
    build = subprocess.run(["bash", "deployments/compose/local-images/build.sh"], cwd=ROOT, capture_output=True,
                           text=True, timeout=1800)
    assert build.returncode == 0, f"stand-in images failed to build:\n{build.stdout}\n{build.stderr}"
    return {"BAZAAR_IMAGE": image, "POSTGRES_IMAGE": "localhost/bazaar-compose-postgres:dev",
            "REDIS_IMAGE": "localhost/bazaar-compose-redis:dev", "MAIL_IMAGE": "localhost/bazaar-compose-mail:dev"}
