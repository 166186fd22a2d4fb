"""apache-airflow-client 2.10.0, unchanged, against nightshift's /api/v1.

Run by tests/airflow_clients.rs with NS_BASE_URL, NS_USER, NS_PASSWORD and the ids of
the example DAGs; every call goes through the client's own models (which check types,
enums and nullability of each response), and each answer is checked for real values.
"""

import datetime
import os
import sys
import time

import airflow_client.client as client
from airflow_client.client.api import (
    dag_api,
    dag_run_api,
    import_error_api,
    monitoring_api,
    pool_api,
    task_instance_api,
)
from airflow_client.client.model.clear_task_instances import ClearTaskInstances
from airflow_client.client.model.dag import DAG
from airflow_client.client.model.dag_run import DAGRun
from airflow_client.client.model.list_dag_runs_form import ListDagRunsForm
from airflow_client.client.model.list_task_instance_form import ListTaskInstanceForm
from airflow_client.client.model.pool import Pool
from airflow_client.client.model.update_task_instances_state import (
    UpdateTaskInstancesState,
)
from airflow_client.client.model.update_task_state import UpdateTaskState

BASE = os.environ["NS_BASE_URL"]
USER = os.environ["NS_USER"]
PASSWORD = os.environ["NS_PASSWORD"]
SLOW = os.environ["NS_SLOW_DAG"]  # `wait` sleeps; `after` depends on it
FLAKY = os.environ["NS_FLAKY_DAG"]  # `work` fails until cleared with the file present
BROKEN_FILE = os.environ["NS_BROKEN_FILE"]
FLAG = os.environ["NS_FLAKY_FLAG"]


def step(name):
    print(f"client2: {name}", flush=True)


def wait_until(what, check, limit=90):
    deadline = time.time() + limit
    while time.time() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def main():
    # The flaky DAG's task fails until this file exists (an earlier script made it).
    if os.path.exists(FLAG):
        os.remove(FLAG)
    config = client.Configuration(host=f"{BASE}/api/v1", username=USER, password=PASSWORD)
    bad = client.Configuration(host=f"{BASE}/api/v1", username=USER, password="wrong-password")

    step("a wrong password is a 401")
    with client.ApiClient(bad) as api:
        try:
            dag_api.DAGApi(api).get_dags()
            raise AssertionError("a wrong password was let in")
        except client.ApiException as err:
            assert err.status == 401, err

    with client.ApiClient(config) as api:
        dags = dag_api.DAGApi(api)
        runs = dag_run_api.DAGRunApi(api)
        tis = task_instance_api.TaskInstanceApi(api)

        step("health and version (health needs no sign-in)")
        with client.ApiClient(client.Configuration(host=f"{BASE}/api/v1")) as anon:
            health = monitoring_api.MonitoringApi(anon).get_health()
            assert str(health.metadatabase.status) == "healthy", health
        version = monitoring_api.MonitoringApi(api).get_version()
        assert version.version, version

        step("list DAGs with tags= and order_by=")
        listed = dags.get_dags(tags=["compat"], order_by="-dag_id")
        ids = [d.dag_id for d in listed.dags]
        assert ids == sorted([SLOW, FLAKY], reverse=True), ids
        assert listed.total_entries == 2, listed.total_entries
        every = [d.dag_id for d in dags.get_dags(order_by="dag_id").dags]
        assert every == sorted(every) and len(every) == 3, every
        second = dags.get_dags(order_by="-dag_id", limit=1, offset=1)
        assert [d.dag_id for d in second.dags] == [sorted(every)[1]], second
        assert second.total_entries == 3, second
        none = dags.get_dags(tags=["no-such-tag"])
        assert none.total_entries == 0 and none.dags == [], none
        try:
            dags.get_dags(order_by="no_such_column")
            raise AssertionError("an unknown order_by was ignored")
        except client.ApiException as err:
            assert err.status == 400, err

        step("get a DAG, pause and unpause it (update_mask)")
        slow = dags.get_dag(SLOW)
        assert slow.dag_id == SLOW and [t.name for t in slow.tags] == ["compat", "slow"], slow
        paused = dags.patch_dag(SLOW, DAG(is_paused=True), update_mask=["is_paused"])
        assert paused.is_paused is True, paused
        assert dags.get_dag(SLOW).is_paused is True
        unpaused = dags.patch_dag(SLOW, DAG(is_paused=False))
        assert unpaused.is_paused is False, unpaused

        step("tasks of a DAG")
        tasks = dags.get_tasks(SLOW)
        assert [t.task_id for t in tasks.tasks] == ["after", "wait"], tasks
        wait_task = dags.get_task(SLOW, "wait")
        assert wait_task.downstream_task_ids == ["after"], wait_task
        assert wait_task.class_ref.class_name == "command", wait_task

        step("trigger with execution_date, note and conf")
        when = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        run = runs.post_dag_run(
            SLOW,
            DAGRun(
                dag_run_id="client2_slow",
                execution_date=when,
                conf={"rows": 3},
                note="triggered by the Airflow 2 client",
            ),
        )
        assert run.dag_run_id == "client2_slow", run
        assert run.execution_date == when, (run.execution_date, when)
        assert run.conf == {"rows": 3}, run.conf
        assert str(run.state) in ("queued", "running"), run.state

        step("list runs with repeated state= and order_by=, get one")
        listed = runs.get_dag_runs(SLOW, state=["queued", "running"], order_by="-execution_date")
        assert "client2_slow" in [r.dag_run_id for r in listed.dag_runs], listed
        got = runs.get_dag_run(SLOW, "client2_slow")
        assert got.dag_run_id == "client2_slow" and got.dag_id == SLOW, got

        step("task instances of an in-flight run")

        def wait_running():
            ti = tis.get_task_instance(SLOW, "client2_slow", "wait")
            return ti if str(ti.state) == "running" else None

        running = wait_until("`wait` to run", wait_running)
        assert running.try_number == 1 and running.hostname, running
        in_flight = tis.get_task_instances(SLOW, "client2_slow")
        states = {t.task_id: t.state for t in in_flight.task_instances}
        assert str(states["wait"]) == "running", states
        # `after` has no state yet: Airflow's null, nightshift's pending.
        assert states["after"] is None, states
        only_running = tis.get_task_instances(SLOW, "client2_slow", state=["running", "queued"])
        assert [t.task_id for t in only_running.task_instances] == ["wait"], only_running

        step("~ wildcards and the batch lists")
        every_run = tis.get_task_instances(SLOW, "~")
        assert {t.task_id for t in every_run.task_instances} == {"wait", "after"}, every_run
        every_dag = tis.get_task_instances("~", "~", state=["running"])
        assert [t.task_id for t in every_dag.task_instances] == ["wait"], every_dag
        batch = runs.get_dag_runs_batch(ListDagRunsForm(dag_ids=[SLOW], states=["running", "queued"]))
        assert [r.dag_run_id for r in batch.dag_runs] == ["client2_slow"], batch
        ti_batch = tis.get_task_instances_batch(
            ListTaskInstanceForm(dag_ids=[SLOW], dag_run_ids=["client2_slow"], task_ids=["wait"])
        )
        assert [t.task_id for t in ti_batch.task_instances] == ["wait"], ti_batch
        any_runs = runs.get_dag_runs("~", order_by="dag_id")
        assert any_runs.total_entries >= 1, any_runs

        step("mark the running task success")
        marked = dags.post_set_task_instances_state(
            SLOW,
            UpdateTaskInstancesState(
                dag_run_id="client2_slow",
                task_id="wait",
                new_state=UpdateTaskState("success"),
                dry_run=False,
                include_upstream=False,
                include_downstream=False,
                include_future=False,
                include_past=False,
            ),
        )
        assert [t.task_id for t in marked.task_instances] == ["wait"], marked

        def slow_done():
            run = runs.get_dag_run(SLOW, "client2_slow")
            return run if str(run.state) == "success" else None

        finished = wait_until("the slow run to succeed", slow_done)
        assert finished.end_date is not None, finished
        done = tis.get_task_instances(SLOW, "client2_slow")
        assert {t.task_id: str(t.state) for t in done.task_instances} == {
            "after": "success",
            "wait": "success",
        }, done

        step("a failed run: its log, clear (dry run, then for real), mark failed")
        failing = runs.post_dag_run(FLAKY, DAGRun(dag_run_id="client2_flaky"))

        def flaky_failed():
            run = runs.get_dag_run(FLAKY, "client2_flaky")
            return run if str(run.state) == "failed" else None

        wait_until("the flaky run to fail", flaky_failed)
        work = tis.get_task_instance(FLAKY, "client2_flaky", "work")
        assert str(work.state) == "failed" and work.try_number == 1, work
        log = tis.get_log(FLAKY, "client2_flaky", "work", 1)
        assert "no flag yet" in log.content, log.content
        clear_body = dict(
            dag_run_id="client2_flaky",
            task_ids=["work"],
            only_failed=True,
            only_running=False,
            include_subdags=False,
            include_parentdag=False,
            reset_dag_runs=True,
            include_upstream=False,
            include_downstream=True,
            include_future=False,
            include_past=False,
            start_date="2000-01-01T00:00:00+00:00",
            end_date="2100-01-01T00:00:00+00:00",
        )
        dry = dags.post_clear_task_instances(FLAKY, ClearTaskInstances(dry_run=True, **clear_body))
        assert sorted(t.task_id for t in dry.task_instances) == ["report", "work"], dry
        assert str(tis.get_task_instance(FLAKY, "client2_flaky", "work").state) == "failed"
        open(FLAG, "w").close()
        cleared = dags.post_clear_task_instances(FLAKY, ClearTaskInstances(dry_run=False, **clear_body))
        assert sorted(t.task_id for t in cleared.task_instances) == ["report", "work"], cleared

        def flaky_succeeded():
            run = runs.get_dag_run(FLAKY, "client2_flaky")
            return run if str(run.state) == "success" else None

        wait_until("the cleared run to succeed", flaky_succeeded)
        work = tis.get_task_instance(FLAKY, "client2_flaky", "work")
        assert str(work.state) == "success" and work.try_number == 2, work
        assert "flag found" in tis.get_log(FLAKY, "client2_flaky", "work", 2).content
        marked = dags.post_set_task_instances_state(
            FLAKY,
            UpdateTaskInstancesState(
                dag_run_id="client2_flaky",
                task_id="report",
                new_state=UpdateTaskState("failed"),
                dry_run=False,
            ),
        )
        assert [t.task_id for t in marked.task_instances] == ["report"], marked
        report = tis.get_task_instance(FLAKY, "client2_flaky", "report")
        assert str(report.state) == "failed", report

        step("import errors")
        errors = import_error_api.ImportErrorApi(api).get_import_errors()
        broken = [e for e in errors.import_errors if e.filename.endswith(BROKEN_FILE)]
        assert len(broken) == 1 and broken[0].stack_trace, errors

        step("pools: create, list, get, delete")
        pools = pool_api.PoolApi(api)
        created = pools.post_pool(Pool(name="client2_pool", slots=3, description="from client 2"))
        assert created.slots == 3 and created.open_slots == 3, created
        names = [p.name for p in pools.get_pools().pools]
        assert "client2_pool" in names and "default_pool" in names, names
        assert pools.get_pool("client2_pool").description == "from client 2"
        pools.delete_pool("client2_pool")
        assert "client2_pool" not in [p.name for p in pools.get_pools().pools]

    step("all calls parsed and checked")


if __name__ == "__main__":
    try:
        main()
    except client.ApiException as err:
        print(f"client2: API error {err.status}: {err.body}", file=sys.stderr)
        raise
