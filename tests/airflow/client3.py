"""apache-airflow-client 3.3.2, unchanged, against nightshift's /api/v2.

The token comes from POST /auth/token, as Airflow 3's documentation shows; every call
then goes through the client's own (pydantic) models, which require the fields Airflow 3
always sends, and each answer is checked for real values.
"""

import datetime
import json
import os
import sys
import time
import urllib.error
import urllib.request

import airflow_client.client as client
from airflow_client.client.api import (
    dag_api,
    dag_run_api,
    import_error_api,
    monitor_api,
    pool_api,
    task_instance_api,
    version_api,
)
from airflow_client.client.models import (
    ClearTaskInstancesBody,
    DAGPatchBody,
    PatchTaskInstanceBody,
    PoolBody,
    TriggerDAGRunPostBody,
)

BASE = os.environ["NS_BASE_URL"]
USER = os.environ["NS_USER"]
PASSWORD = os.environ["NS_PASSWORD"]
SLOW = os.environ["NS_SLOW_DAG"]
FLAKY = os.environ["NS_FLAKY_DAG"]
BROKEN_FILE = os.environ["NS_BROKEN_FILE"]
FLAG = os.environ["NS_FLAKY_FLAG"]


def step(name):
    print(f"client3: {name}", flush=True)


def wait_until(what, check, limit=90):
    deadline = time.time() + limit
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def post_json(url, body):
    request = urllib.request.Request(
        url,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def state(value):
    return None if value is None else getattr(value, "value", value)


def main():
    # The flaky DAG's task fails until this file exists (an earlier script made it).
    if os.path.exists(FLAG):
        os.remove(FLAG)
    step("a token from POST /auth/token (201), a wrong password is a 401")
    status, body = post_json(f"{BASE}/auth/token", {"username": USER, "password": "wrong"})
    assert status == 401 and "detail" in body, (status, body)
    status, body = post_json(f"{BASE}/auth/token", {"username": USER, "password": PASSWORD})
    assert status == 201 and body["access_token"], (status, body)
    token = body["access_token"]

    step("version and health need no token")
    with client.ApiClient(client.Configuration(host=BASE)) as anon:
        version = version_api.VersionApi(anon).get_version()
        assert version.version, version
        health = monitor_api.MonitorApi(anon).get_health()
        assert health.metadatabase.status == "healthy", health
        try:
            dag_api.DAGApi(anon).get_dags()
            raise AssertionError("listing DAGs without a token worked")
        except client.ApiException as err:
            assert err.status == 401, err

    config = client.Configuration(host=BASE, access_token=token)
    with client.ApiClient(config) as api:
        dags = dag_api.DAGApi(api)
        runs = dag_run_api.DagRunApi(api)
        tis = task_instance_api.TaskInstanceApi(api)

        step("list DAGs with tags and order_by; get one; pause and unpause")
        listed = dags.get_dags(tags=["compat"], order_by="-dag_id")
        assert [d.dag_id for d in listed.dags] == sorted([SLOW, FLAKY], reverse=True), listed
        assert listed.total_entries == 2, listed
        page = dags.get_dags(limit=1, offset=1, order_by="dag_id")
        assert page.total_entries == 3 and len(page.dags) == 1, page
        slow = dags.get_dag(SLOW)
        assert slow.dag_display_name == SLOW and slow.owners == ["data"], slow
        assert [(t.name, t.dag_id) for t in slow.tags] == [("compat", SLOW), ("slow", SLOW)]
        assert slow.has_import_errors is False and slow.is_stale is False, slow
        paused = dags.patch_dag(SLOW, DAGPatchBody(is_paused=True), update_mask=["is_paused"])
        assert paused.is_paused is True, paused
        assert dags.get_dags(paused=True).total_entries == 1
        assert dags.patch_dag(SLOW, DAGPatchBody(is_paused=False)).is_paused is False

        step("trigger with conf; list and get queued/running runs")
        when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        run = runs.trigger_dag_run(
            SLOW,
            TriggerDAGRunPostBody(dag_run_id="client3_slow", logical_date=when, conf={"rows": 7}),
        )
        assert run.dag_run_id == "client3_slow" and run.conf == {"rows": 7}, run
        assert run.logical_date == when, (run.logical_date, when)
        assert state(run.state) in ("queued", "running"), run.state
        assert len(run.dag_versions) == 1 and run.dag_versions[0].version_number == 1, run
        listed = runs.get_dag_runs(SLOW, state=["queued", "running"], order_by="-run_after")
        assert [r.dag_run_id for r in listed.dag_runs] == ["client3_slow"], listed
        every = runs.get_dag_runs("~", limit=100)
        assert "client3_slow" in [r.dag_run_id for r in every.dag_runs], every
        got = runs.get_dag_run(SLOW, "client3_slow")
        assert got.dag_id == SLOW and got.run_after == when, got

        step("task instances of an in-flight run")

        def wait_running():
            ti = tis.get_task_instance(SLOW, "client3_slow", "wait")
            return ti if state(ti.state) == "running" else None

        running = wait_until("`wait` to run", wait_running)
        assert running.try_number == 1 and running.hostname, running
        listed = tis.get_task_instances(SLOW, "client3_slow")
        states = {t.task_id: state(t.state) for t in listed.task_instances}
        assert states == {"wait": "running", "after": None}, states
        ids = {t.id for t in listed.task_instances}
        assert len(ids) == 2, ids

        step("mark the running task success (PATCH, dry run first)")
        dry = tis.patch_task_instance_dry_run(
            SLOW, "client3_slow", "wait", PatchTaskInstanceBody(new_state="success")
        )
        assert [t.task_id for t in dry.task_instances] == ["wait"], dry
        assert state(tis.get_task_instance(SLOW, "client3_slow", "wait").state) == "running"
        marked = tis.patch_task_instance(
            SLOW, "client3_slow", "wait", PatchTaskInstanceBody(new_state="success")
        )
        assert [(t.task_id, state(t.state)) for t in marked.task_instances] == [("wait", "success")], marked

        def slow_done():
            run = runs.get_dag_run(SLOW, "client3_slow")
            return run if state(run.state) == "success" else None

        wait_until("the slow run to succeed", slow_done)
        done = tis.get_task_instances(SLOW, "client3_slow")
        assert {t.task_id: state(t.state) for t in done.task_instances} == {
            "wait": "success",
            "after": "success",
        }, done

        step("a failed run: its log; clear with Airflow 3's defaults (dry run), then for real")
        runs.trigger_dag_run(FLAKY, TriggerDAGRunPostBody(dag_run_id="client3_flaky", logical_date=None))

        def flaky_failed():
            run = runs.get_dag_run(FLAKY, "client3_flaky")
            return run if state(run.state) == "failed" else None

        wait_until("the flaky run to fail", flaky_failed)
        log = tis.get_log(FLAKY, "client3_flaky", "work", 1)
        events = [m.event for m in log.content.actual_instance]
        assert "no flag yet" in events, events
        # Airflow 3: dry_run and only_failed default to true.
        dry = tis.post_clear_task_instances(
            FLAKY, ClearTaskInstancesBody(dag_run_id="client3_flaky", include_downstream=True)
        )
        assert sorted(t.task_id for t in dry.task_instances) == ["report", "work"], dry
        assert state(tis.get_task_instance(FLAKY, "client3_flaky", "work").state) == "failed"
        if not os.path.exists(FLAG):
            open(FLAG, "w").close()
        cleared = tis.post_clear_task_instances(
            FLAKY,
            ClearTaskInstancesBody(dag_run_id="client3_flaky", dry_run=False, include_downstream=True),
        )
        assert sorted(t.task_id for t in cleared.task_instances) == ["report", "work"], cleared

        def flaky_succeeded():
            run = runs.get_dag_run(FLAKY, "client3_flaky")
            return run if state(run.state) == "success" else None

        wait_until("the cleared run to succeed", flaky_succeeded)
        work = tis.get_task_instance(FLAKY, "client3_flaky", "work")
        assert state(work.state) == "success" and work.try_number == 2, work
        marked = tis.patch_task_instance(
            FLAKY, "client3_flaky", "report", PatchTaskInstanceBody(new_state="failed")
        )
        assert [(t.task_id, state(t.state)) for t in marked.task_instances] == [("report", "failed")]

        step("import errors")
        errors = import_error_api.ImportErrorApi(api).get_import_errors()
        broken = [e for e in errors.import_errors if e.filename.endswith(BROKEN_FILE)]
        assert len(broken) == 1 and broken[0].stack_trace, errors
        one = import_error_api.ImportErrorApi(api).get_import_error(broken[0].import_error_id)
        assert one.filename == broken[0].filename, one

        step("pools: create, list, delete")
        pools = pool_api.PoolApi(api)
        created = pools.post_pool(PoolBody(name="client3_pool", slots=4, description="from client 3"))
        assert created.slots == 4 and created.open_slots == 4, created
        assert "client3_pool" in [p.name for p in pools.get_pools().pools]
        pools.delete_pool("client3_pool")
        assert "client3_pool" not in [p.name for p in pools.get_pools().pools]

    step("all calls parsed and checked")


if __name__ == "__main__":
    try:
        main()
    except client.ApiException as err:
        print(f"client3: API error {err.status}: {err.body}", file=sys.stderr)
        raise
