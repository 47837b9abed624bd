"""Password-bearing URLs work and the passwords never reach any output; the worker warns at
boot about a Redis without persistence."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url

from tests.factories import purchase
from tests.fault.servers import PrivateRedis, WorkerProcess, free_port, have_redis_server, loyalty

pytestmark = [pytest.mark.fault, pytest.mark.skipif(not have_redis_server(), reason="needs redis-server")]

REDIS_PASSWORD = "r3dis-Pa55word-0f-the-t3st"
DB_PASSWORD = "pg-Pa55word-0f-the-t3st"
WORK_S = 60


async def test_passwords_in_urls_work_and_never_appear_in_any_output(db, fault_env, tmp_path):
    redis_server = PrivateRedis(tmp_path / "redis", "--requirepass", REDIS_PASSWORD, "--appendonly", "no")
    redis_server.start()
    # The shared PostgreSQL trusts local connections, so any password is accepted there.
    database_url = (
        make_url(fault_env["LOYALTY_DATABASE_URL"]).set(password=DB_PASSWORD).render_as_string(hide_password=False)
    )
    env = {
        **fault_env,
        "LOYALTY_DATABASE_URL": database_url,
        "LOYALTY_REDIS_URL": f"redis://:{REDIS_PASSWORD}@127.0.0.1:{redis_server.port}/0",
        "LOYALTY_LOG_LEVEL": "DEBUG",
    }
    outputs = []
    worker = WorkerProcess(env, tmp_path / "worker.log", processes=1, threads=2)
    try:
        published = loyalty(["publish", "-"], env, stdin=json.dumps(purchase("SECRET-1", "12.00")) + "\n{bad json\n")
        outputs += [published.stdout, published.stderr]
        assert published.returncode == 1
        assert published.stderr.startswith("line 2: event: not valid JSON")
        worker.start()
        deadline = asyncio.get_running_loop().time() + WORK_S
        while True:
            async with db.connect() as conn:
                found = (
                    await conn.execute(text("SELECT available_points FROM members WHERE member_id = 'SECRET-1'"))
                ).scalar()
            if found is not None:
                break
            assert asyncio.get_running_loop().time() < deadline, worker.output()[-3000:]
            await asyncio.sleep(0.05)
        assert found == 112
        for args in (["audit"], ["member", "show", "SECRET-1"], ["rejected", "list"]):
            result = loyalty(args, env)
            assert result.returncode == 0, result.stderr
            outputs += [result.stdout, result.stderr]
        # Failures print errors, not URLs: a wrong Redis password, an unreachable database.
        wrong = {**env, "LOYALTY_REDIS_URL": f"redis://:{REDIS_PASSWORD}-wrong@127.0.0.1:{redis_server.port}/0"}
        failed_publish = loyalty(["publish", "-"], wrong, stdin=json.dumps(purchase("SECRET-2", "1.00")) + "\n")
        unreachable = {**env, "LOYALTY_DATABASE_URL": f"postgresql://app:{DB_PASSWORD}@127.0.0.1:{free_port()}/x"}
        failed_audit = loyalty(["audit"], unreachable)
        assert (failed_publish.returncode, failed_publish.stderr) == (
            3,
            f"error: cannot connect to Redis at 127.0.0.1:{redis_server.port}: invalid username-password pair or user is disabled.\n",
        )
        assert failed_audit.returncode == 3
        assert failed_audit.stderr.startswith("error: cannot connect to PostgreSQL at 127.0.0.1:")
        outputs += [failed_publish.stdout, failed_publish.stderr, failed_audit.stdout, failed_audit.stderr]
    finally:
        worker.stop()
        redis_server.stop()
    outputs.append(worker.output())
    everything = "\n".join(outputs)
    assert "worker_runtime_ready" in everything
    assert REDIS_PASSWORD not in everything
    assert DB_PASSWORD not in everything
    warnings = [json.loads(line) for line in worker.output().splitlines() if '"redis_not_durable"' in line]
    assert [w["problem"] for w in warnings] == [
        "Redis has no persistence (appendonly no, no save points): a restart loses queued events",
    ] * len(warnings)
    assert warnings and all(w["level"] == "warning" for w in warnings)
