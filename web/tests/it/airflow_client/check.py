"""Drives Updraft's REST API with the real `apache-airflow-client` 2.x, whose generated models
check every field's type and nullability: a mismatch with Airflow's schema raises here.

Environment: BASE_URL, UPDRAFT_USER, UPDRAFT_PASSWORD, DAG_ID (a paused DAG with one shell task
`say` that echoes params.message).
"""
import os
import time

import airflow_client.client as client
from airflow_client.client.api import dag_api, dag_run_api, task_instance_api, x_com_api
from airflow_client.client.api import connection_api, import_error_api, monitoring_api
from airflow_client.client.api import event_log_api, variable_api
from airflow_client.client.model.connection import Connection
from airflow_client.client.model.variable import Variable
from airflow_client.client.model.clear_task_instances import ClearTaskInstances
from airflow_client.client.model.dag import DAG
from airflow_client.client.model.dag_run import DAGRun
from airflow_client.client.model.update_dag_run_state import UpdateDagRunState

base = os.environ["BASE_URL"].rstrip("/") + "/api/v1"
dag_id = os.environ.get("DAG_ID", "browser_demo")
config = client.Configuration(host=base, username=os.environ.get("UPDRAFT_USER", "admin"),
                              password=os.environ["UPDRAFT_PASSWORD"])


def step(text):
    print(f"[airflow-client] {text}", flush=True)


with client.ApiClient(config) as api:
    dags = dag_api.DAGApi(api)
    runs = dag_run_api.DAGRunApi(api)
    tis = task_instance_api.TaskInstanceApi(api)

    step("health and version")
    health = monitoring_api.MonitoringApi(api).get_health()
    assert health.metadatabase.status.value == "healthy", health
    assert monitoring_api.MonitoringApi(api).get_version().version

    step("list, get, details")
    listed = dags.get_dags(limit=10, tags=["browser"])
    assert listed.total_entries >= 1 and listed.dags[0].dag_id == dag_id, listed
    dag = dags.get_dag(dag_id)
    assert dag.is_paused is True
    details = dags.get_dag_details(dag_id)
    assert details.dag_id == dag_id

    step("unpause")
    patched = dags.patch_dag(dag_id, DAG(is_paused=False), update_mask=["is_paused"])
    assert patched.is_paused is False

    step("trigger and wait")
    run = runs.post_dag_run(dag_id, DAGRun(dag_run_id="client-1", conf={"message": "from-client"}))
    assert run.dag_run_id == "client-1" and run.state.value in ("queued", "running"), run
    deadline = time.time() + 60
    while True:
        run = runs.get_dag_run(dag_id, "client-1")
        if run.state.value == "success":
            break
        assert run.state.value != "failed", run
        assert time.time() < deadline, f"run still {run.state}"
        time.sleep(0.3)
    assert runs.get_dag_runs(dag_id, limit=5).total_entries >= 1
    try:
        runs.post_dag_run(dag_id, DAGRun(dag_run_id="client-1"))
        raise AssertionError("duplicate run id accepted")
    except client.ApiException as error:
        assert error.status == 409, error

    step("task instances, log, xcom")
    listed = tis.get_task_instances(dag_id, "client-1")
    assert listed.total_entries == 2, listed
    ti = tis.get_task_instance(dag_id, "client-1", "say")
    assert ti.state.value == "success" and ti.try_number == 1, ti
    log = tis.get_log(dag_id, "client-1", "say", 1, full_content=True)
    assert "from-client" in log.content, log
    entries = x_com_api.XComApi(api).get_xcom_entries(dag_id, "client-1", "say")
    for entry in entries.xcom_entries:
        x_com_api.XComApi(api).get_xcom_entry(dag_id, "client-1", "say", entry.key)

    step("mark failed, clear, import errors")
    marked = runs.update_dag_run_state(dag_id, "client-1", UpdateDagRunState(state="failed"))
    assert marked.state.value == "failed"
    cleared = dags.post_clear_task_instances(
        dag_id, ClearTaskInstances(dry_run=True, dag_run_id="client-1", only_failed=False))
    assert len(cleared.task_instances) == 2, cleared
    import_error_api.ImportErrorApi(api).get_import_errors()

    step("connections: create, list, get, patch, delete")
    conns = connection_api.ConnectionApi(api)
    created = conns.post_connection(Connection(
        connection_id="client_api", conn_type="http", host="api.example.com", login="bot",
        password="client-pw-123", port=8443, schema="v1", extra='{"timeout": "5"}'))
    assert created.connection_id == "client_api" and created.port == 8443, created
    listed = conns.get_connections(limit=10)
    assert [c.connection_id for c in listed.connections] == ["client_api"], listed
    assert listed.total_entries == 1
    got = conns.get_connection("client_api")
    assert got.host == "api.example.com" and got.schema == "v1", got
    assert "client-pw-123" not in str(got.to_dict()), "the password came back"
    patched = conns.patch_connection(
        "client_api", Connection(connection_id="client_api", conn_type="http",
                                 host="api2.example.com"), update_mask=["host"])
    assert patched.host == "api2.example.com" and patched.login == "bot", patched
    try:
        conns.post_connection(Connection(connection_id="client_api", conn_type="http"))
        raise AssertionError("duplicate connection accepted")
    except client.ApiException as error:
        assert error.status == 409, error
    conns.delete_connection("client_api")
    assert conns.get_connections().total_entries == 0

    step("variables: create, list, get, patch, delete")
    variables = variable_api.VariableApi(api)
    variables.post_variables(Variable(key="client_var", value="v1", description="from the client"))
    assert [v.key for v in variables.get_variables().variables] == ["client_var"]
    assert variables.get_variable("client_var").value == "v1"
    patched = variables.patch_variable("client_var", Variable(key="client_var", value="v2"),
                                       update_mask=["value"])
    assert patched.value == "v2" and patched.description == "from the client", patched
    variables.delete_variable("client_var")
    assert variables.get_variables().total_entries == 0

    step("event logs: the changes above, filtered, one by id")
    events = event_log_api.EventLogApi(api)
    deleted = events.get_event_logs(event="variable_delete", order_by="-event_log_id")
    assert deleted.total_entries == 1, deleted
    entry = deleted.event_logs[0]
    assert entry.owner == config.username and '"source":"api"' in entry.extra, entry
    assert events.get_event_log(entry.event_log_id).event == "variable_delete"
    assert events.get_event_logs(dag_id=dag_id, limit=100).total_entries >= 1
    step("ok")
