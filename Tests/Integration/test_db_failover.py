"""Database failover: PostgreSQL as a primary with a synchronous streaming replica (Debian's
packages: pg_basebackup, standby.signal), the services connected with a multi-host conninfo and
`target_session_attrs=read-write`. The primary is killed with SIGKILL while shoppers check out
through the gateway, and the test promotes the replica (what Patroni would do; etcd is not in
Debian's reach here). The services reconnect to the new primary by themselves, checkouts go on,
and no order the shop answered PAID is lost: synchronous replication had it on the replica before
the answer."""
import os
import pathlib
import shutil
import signal
import subprocess
import tempfile

import pytest

from mesh_fixtures import free_port
from shop_fixtures import psql
from soak import Workload, start_shop
from waiting import wait_for

ROOT = pathlib.Path(__file__).resolve().parents[2]
POSTGRES = str(ROOT / "scripts" / "postgres.sh")


def as_postgres(*args):
    """Runs a PostgreSQL program as its own user (initdb and friends refuse root)."""
    prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    out = subprocess.run(prefix + list(args), capture_output=True, text=True)
    assert out.returncode == 0, f"{args[0]}: {out.stderr}"
    return out.stdout


def server_bin(name):
    found = sorted(pathlib.Path("/usr/lib/postgresql").glob(f"*/bin/{name}"))
    assert found, f"no {name} (apt-get install postgresql)"
    return str(found[-1])


@pytest.fixture
def clusters(monkeypatch):
    """A primary and a synchronous standby on loopback; BAZAAR_TEST_POSTGRES names both, so the
    shop's databases are made on the primary and its services reach whichever is read-write."""
    work = pathlib.Path(tempfile.mkdtemp(prefix="bazaar-failover."))
    work.chmod(0o755)
    primary, standby = work / "primary", work / "standby"
    p_port, s_port = free_port(), free_port()
    subprocess.run(["bash", POSTGRES, "start", str(primary), str(p_port)], check=True, capture_output=True)
    try:
        standby.mkdir()
        if os.geteuid() == 0:
            shutil.chown(standby, "postgres")
        # A copy of the primary that follows it (-R: standby.signal and primary_conninfo).
        as_postgres(server_bin("pg_basebackup"), "-h", "127.0.0.1", "-p", str(p_port), "-U", "postgres",
                    "-D", str(standby / "data"), "-R", "-X", "stream", "-c", "fast")
        with open(standby / "data" / "postgresql.auto.conf", "a") as f:
            f.write("cluster_name = 'standby'\n")
        subprocess.run(["bash", POSTGRES, "start", str(standby), str(s_port)], check=True, capture_output=True)
        p_admin = f"host=127.0.0.1 port={p_port} user=postgres dbname=postgres"
        psql(p_admin, "ALTER SYSTEM SET synchronous_standby_names = 'standby'")
        psql(p_admin, "SELECT pg_reload_conf()")
        wait_for("the standby to replicate synchronously",
                 lambda: psql(p_admin, "SELECT count(*) FROM pg_stat_replication WHERE sync_state = 'sync'") == "1")
        monkeypatch.setenv("BAZAAR_TEST_POSTGRES", f"host=127.0.0.1,127.0.0.1 port={p_port},{s_port} user=postgres "
                                                   "dbname=postgres target_session_attrs=read-write")
        yield primary, standby, p_port, s_port
    finally:
        for c in (primary, standby):
            subprocess.run(["bash", POSTGRES, "stop", str(c)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def test_the_primary_dies_during_checkouts_and_no_paid_order_is_lost(clusters, tmp_path):
    primary, standby, p_port, s_port = clusters
    shop, port, _ = start_shop(tmp_path / "shop")
    try:
        load = Workload(shop, port, 8)
        load.start()
        try:
            wait_for("checkouts to be answered PAID", lambda: len(load.orders) >= 20,
                     detail=lambda: "\n".join(load.failures[-5:]))
            pid = int((primary / "data" / "postmaster.pid").read_text().split()[0])
            os.kill(pid, signal.SIGKILL)
            with load.lock:
                answered_before_promotion = len(load.orders)
            # The failover: the standby becomes the primary (pg_ctl promote waits until it is).
            as_postgres(server_bin("pg_ctl"), "-D", str(standby / "data"), "-w", "promote")
            s_admin = f"host=127.0.0.1 port={s_port} user=postgres dbname=postgres"
            assert psql(s_admin, "SELECT pg_is_in_recovery()") == "f"
            # The services find the new primary on their own: checkouts are answered PAID again.
            wait_for("checkouts to be answered PAID on the new primary",
                     lambda: len(load.orders) >= answered_before_promotion + 20,
                     detail=lambda: "\n".join(load.failures[-5:]) + "\n" + shop.log("orders")[-2000:])
        finally:
            load.finish()

        total = load.answered() + load.failed()
        print(f"\nfailover: {load.answered()} of {total} requests answered, {load.failed()} failed "
              f"({load.failed_by}), {len(load.orders)} orders answered PAID")
        # Every order answered PAID, before the kill or after the promotion, is in the new primary, paid.
        paid = set(shop.sql("orders", "SELECT id FROM orders WHERE status = 'PAID'").split())
        lost = [o for o, status in load.orders if status == "ORDER_STATUS_PAID" and o not in paid]
        assert not lost, f"{len(lost)} of {len(load.orders)} orders answered PAID are not in the new primary: {lost[:5]}"
        assert all(status == "ORDER_STATUS_PAID" for _, status in load.orders), load.orders[:5]
        # ... charged once each.
        assert shop.sql("orders", "SELECT count(*) FROM (SELECT idempotency_key FROM test_payments WHERE status = 'succeeded' "
                                  "GROUP BY 1 HAVING count(*) > 1) d") == "0"
    finally:
        shop.close()
