"""The native stack's own logic: service order, ports, the env file, pid records, `down`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from genreops.core.pidfiles import (
    SERVE_OWNER,
    STACK_OWNER,
    PidRecord,
    record_alive,
    write_record,
)
from genreops.core.processes import start_ticks
from genreops.core.settings import Settings
from genreops.platform import stack
from genreops.platform.stack import (
    SERVICES,
    Stack,
    StackError,
    busy_ports,
    duplicate_ports,
    read_record,
    render_env_file,
    select_services,
    service_ports,
    stack_environment,
)
from helpers import wait_until

pytestmark = pytest.mark.unit


def settings_for(home: Path, **values: object) -> Settings:
    return Settings(_env_file=None, home=home, **values)  # type: ignore[arg-type]


@pytest.fixture
def listener() -> Iterator[int]:
    """A port held by something that is not the stack."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        yield int(sock.getsockname()[1])


@pytest.fixture
def group_leader() -> Iterator[subprocess.Popen[bytes]]:
    """A process leading its own group with a child, like every service of the stack."""
    process = subprocess.Popen(
        ["sh", "-c", "sleep 120 & sleep 120; wait"],
        start_new_session=True,
    )
    try:
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


def _group_members(pgid: int) -> list[int]:
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


# --- order and ports ----------------------------------------------------------------------


def test_services_start_in_dependency_order() -> None:
    assert SERVICES == (
        "s3",
        "mlflow",
        "prefect",
        "dask-scheduler",
        "dask-workers",
        "deployments",
        "triton",
        "triton-replicas",
        "monitor",
        "alertmanager",
        "prometheus",
        "drift-ui",
    )
    for service, needs in stack.DEPENDENCIES.items():
        for dependency in needs:
            assert SERVICES.index(dependency) < SERVICES.index(service)


def test_only_pulls_in_what_a_service_needs_and_keeps_start_order() -> None:
    assert select_services(None) == list(SERVICES)
    assert select_services(["deployments", "mlflow"]) == [
        "s3", "mlflow", "prefect", "dask-scheduler", "dask-workers", "deployments",
    ]  # fmt: skip
    assert select_services(["drift-ui", " triton "]) == ["triton", "drift-ui"]
    assert select_services(["alertmanager"]) == ["monitor", "alertmanager"]


def test_services_start_side_by_side_once_what_they_need_is_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow waits for S3 and the deployments for Prefect; the rest start at once. After a
    failure nothing new starts, what was starting finishes, and the first error is raised."""
    import threading
    import time

    events: list[tuple[str, str]] = []
    lock = threading.Lock()
    s3_failed = threading.Event()

    def bring_up(self: Stack, service: str, timeout: float | None, emit: object) -> None:
        with lock:
            events.append(("start", service))
        time.sleep(0.3 if service == "s3" else 0.05)
        if service == "prefect" and failing:  # Prefect comes up only once S3 has failed
            s3_failed.wait(timeout=30)
            time.sleep(0.2)
        if service == failing:
            s3_failed.set()
            raise StackError(f"{service} broke")
        with lock:
            events.append(("up", service))

    monkeypatch.setattr(Stack, "_bring_up", bring_up)
    s = Stack(settings_for(tmp_path))
    failing = None
    s._bring_up_all(list(SERVICES), None, lambda *event: None)
    order = [service for kind, service in events if kind == "start"]
    assert sorted(order) == sorted(SERVICES)
    for service, needs in stack.DEPENDENCIES.items():
        for dependency in needs:
            assert events.index(("up", dependency)) < events.index(("start", service))
    # side by side: the independent services started before S3 was up
    assert events.index(("start", "drift-ui")) < events.index(("up", "s3"))

    events.clear()
    failing = "s3"
    with pytest.raises(StackError, match="s3 broke"):
        s._bring_up_all(list(SERVICES), None, lambda *event: None)
    started = {service for kind, service in events if kind == "start"}
    assert "mlflow" not in started  # its dependency failed
    assert {"prefect", "triton", "prometheus", "drift-ui"} <= started
    # the deployments wait for Prefect, up only after S3 failed: not started then
    assert "deployments" not in started
    assert ("up", "prefect") in events  # what was starting finished


def test_only_rejects_an_unknown_service_naming_the_known_ones() -> None:
    with pytest.raises(StackError, match=r"unknown service grafana \(known: s3, mlflow"):
        select_services(["grafana"])


def test_default_ports_do_not_clash(tmp_path: Path) -> None:
    ports = service_ports(settings_for(tmp_path))
    assert duplicate_ports(ports) == []
    numbers = {p.number for service in ports.values() for p in service}
    assert numbers == {4568, 5000, 4200, 8786, 8787, 8000, 8001, 8002, 9095, 9093, 9090, 8085}


def test_two_services_on_one_port_is_reported_before_anything_starts(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, prometheus_port=5000)
    problems = duplicate_ports(service_ports(settings))
    assert len(problems) == 1
    assert "port 5000 (MLflow, set GENREOPS_MLFLOW_PORT)" in problems[0]
    assert "(Prometheus, set GENREOPS_PROMETHEUS_PORT)" in problems[0]
    with pytest.raises(StackError, match="ports clash"):
        Stack(settings).up()
    assert not (tmp_path / "run").exists()  # nothing was started


def test_a_port_held_by_another_process_names_port_service_and_setting(
    tmp_path: Path, listener: int
) -> None:
    settings = settings_for(tmp_path, triton_grpc_port=listener)
    busy = busy_ports(["triton"], service_ports(settings), lambda port: port == listener)
    assert busy == [
        f"port {listener} (Triton gRPC, set GENREOPS_TRITON_GRPC_PORT) is already in use "
        "by another process"
    ]
    # through `up`: refused before any process starts (the clash is checked first)
    settings = settings_for(tmp_path, drift_ui_port=listener)
    with pytest.raises(StackError) as raised:
        Stack(settings).up(only=["drift-ui"])
    message = str(raised.value)
    assert f"port {listener} (Evidently UI, set GENREOPS_DRIFT_UI_PORT)" in message
    assert "already in use" in message
    assert not (tmp_path / "run" / "drift-ui.json").exists()


# --- the env file -------------------------------------------------------------------------


def test_env_file_lists_only_running_services_and_sources_in_a_shell(tmp_path: Path) -> None:
    settings = settings_for(tmp_path / "my home", s3_port=14568, prefect_port=14200)
    env = stack_environment(settings, running=["s3", "prefect"])
    assert env["GENREOPS_S3_ENDPOINT_URL"] == "http://127.0.0.1:14568"
    assert env["AWS_ACCESS_KEY_ID"] == "S3RVER"
    assert env["PREFECT_API_URL"] == "http://127.0.0.1:14200/api"
    assert "GENREOPS_MLFLOW_TRACKING_URI" not in env  # MLflow is not running
    assert "GENREOPS_TRITON_URL" not in env
    assert env["GENREOPS_HOME"] == str((tmp_path / "my home").resolve())

    path = tmp_path / "stack.env"
    path.write_text(render_env_file(env))
    shell = subprocess.run(
        ["bash", "-c", f'source "{path}"; echo "$GENREOPS_HOME|$PREFECT_API_URL"'],
        capture_output=True,
        text=True,
        check=True,
        env={"PATH": os.environ["PATH"]},
    )
    assert shell.stdout.strip() == f"{tmp_path / 'my home'}|http://127.0.0.1:14200/api"


def test_extraction_goes_to_the_stacks_dask_cluster_or_to_the_users_own(tmp_path: Path) -> None:
    """The stack's scheduler is what GENREOPS_DASK_ADDRESS names for every process it starts
    (and for the CLI, through stack.env); a user's own cluster replaces it: no scheduler or
    workers are started then, and status says why."""
    settings = settings_for(tmp_path, dask_scheduler_port=18786)
    assert stack_environment(settings)["GENREOPS_DASK_ADDRESS"] == "tcp://127.0.0.1:18786"
    assert "GENREOPS_DASK_ADDRESS" not in stack_environment(settings, running=["s3"])
    assert Stack(settings).missing("dask-workers") is None
    # the stack's own address read back from stack.env is still the stack's, not the user's
    again = settings_for(tmp_path, dask_scheduler_port=18786, dask_address="tcp://127.0.0.1:18786")
    assert Stack(again).missing("dask-scheduler") is None

    theirs = settings_for(tmp_path, dask_address="tcp://10.0.0.5:8786")
    assert stack_environment(theirs, running=["s3"])["GENREOPS_DASK_ADDRESS"] == (
        "tcp://10.0.0.5:8786"
    )
    for service in ("dask-scheduler", "dask-workers"):
        assert Stack(theirs).missing(service) == (
            "extraction uses the cluster at GENREOPS_DASK_ADDRESS=tcp://10.0.0.5:8786"
        )


def test_triton_replicas_get_ports_state_and_clients_of_their_own(tmp_path: Path) -> None:
    """GENREOPS_TRITON_REPLICAS=3: two more servers on ports + 10 and + 20, checked for
    clashes like every port; clients get all three; each replica's drift state is its own and
    the drift views read them all."""
    from genreops.platform.stack.services import duplicate_ports, service_ports

    one = settings_for(tmp_path)
    assert Stack(one).missing("triton-replicas") == (
        "one Triton server (GENREOPS_TRITON_REPLICAS=1)"
    )
    assert stack_environment(one)["GENREOPS_TRITON_URL"] == "127.0.0.1:8001"

    three = settings_for(tmp_path, triton_replicas=3)
    assert Stack(three).missing("triton-replicas") is None
    ports = service_ports(three)["triton-replicas"]
    assert [p.number for p in ports] == [8010, 8011, 8012, 8020, 8021, 8022]
    assert stack_environment(three)["GENREOPS_TRITON_URL"] == (
        "127.0.0.1:8001,127.0.0.1:8011,127.0.0.1:8021"
    )
    only_first = stack_environment(three, running=["triton"])["GENREOPS_TRITON_URL"]
    assert only_first == "127.0.0.1:8001"  # replicas not started: not sent requests
    clash = settings_for(tmp_path, triton_replicas=2, drift_ui_port=8010)
    assert any("Triton replicas replica 1" in p for p in duplicate_ports(service_ports(clash)))

    home = tmp_path.resolve()
    replica = settings_for(tmp_path, serving_replica=2)
    assert replica.serving_dir == home / "serving" / "replica-2"
    assert replica.monitoring_spool_dir == home / "serving" / "replica-2" / "spool"
    (home / "serving" / "replica-10").mkdir(parents=True)
    (home / "serving" / "replica-x").mkdir()  # not a replica's
    replica.serving_dir.mkdir()
    assert one.serving_dirs == [
        home / "serving",
        home / "serving" / "replica-2",
        home / "serving" / "replica-10",
    ]


def test_settings_pick_up_the_stack_env_file_below_explicit_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in list(os.environ):
        if name.startswith("GENREOPS_") or name == "PREFECT_API_URL":
            monkeypatch.delenv(name)
    home = tmp_path / "home"
    home.mkdir()
    env = stack_environment(settings_for(home, mlflow_port=15000, triton_grpc_port=18001))
    (home / "stack.env").write_text(render_env_file(env))

    found = Settings(_env_file=None, home=home)  # type: ignore[call-arg]
    assert found.mlflow_uri == "http://127.0.0.1:15000"
    assert found.triton_url == "127.0.0.1:18001"
    assert found.s3.endpoint_url == "http://127.0.0.1:4568"
    assert found.s3.secret_access_key == "S3RVER"
    assert found.prefect_api_url == "http://127.0.0.1:4200/api"

    monkeypatch.setenv("GENREOPS_MLFLOW_TRACKING_URI", "sqlite:///explicit.db")
    monkeypatch.setenv("GENREOPS_HOME", str(home))
    explicit = Settings(_env_file=None)  # type: ignore[call-arg]
    assert explicit.mlflow_uri == "sqlite:///explicit.db"  # an exported variable wins
    assert explicit.triton_url == "127.0.0.1:18001"  # the rest still comes from the stack

    monkeypatch.setenv("GENREOPS_USE_STACK_ENV", "false")
    ignored = Settings(_env_file=None)  # type: ignore[call-arg]
    assert ignored.triton_url == "127.0.0.1:8001"
    assert ignored.s3.endpoint_url is None


def test_env_file_never_moves_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENREOPS_HOME", raising=False)
    home = tmp_path / "home"
    home.mkdir()
    (home / "stack.env").write_text("export GENREOPS_HOME=/elsewhere\n")
    assert Settings(_env_file=None, home=home).home == home  # type: ignore[call-arg]


# --- pid records --------------------------------------------------------------------------


def test_a_record_is_alive_only_for_the_same_process(
    tmp_path: Path, group_leader: subprocess.Popen[bytes]
) -> None:
    ticks = start_ticks(group_leader.pid)
    assert ticks is not None
    assert record_alive(PidRecord("s3", group_leader.pid, ticks))
    # same pid, another start time: a reused pid is somebody else's process
    assert not record_alive(PidRecord("s3", group_leader.pid, ticks + 1))

    finished = subprocess.Popen(["true"])
    finished.wait()
    assert not record_alive(PidRecord("s3", finished.pid, 1))


def test_a_record_written_before_psutil_still_names_its_process(
    tmp_path: Path, group_leader: subprocess.Popen[bytes]
) -> None:
    """Old records hold /proc/PID/stat's starttime (field 22, clock ticks since boot); the
    psutil-based start time must be that very number, and a mismatch must stay hands-off."""
    stat = Path(f"/proc/{group_leader.pid}/stat").read_text()
    ticks = int(stat[stat.rfind(")") + 2 :].split()[19])
    assert start_ticks(group_leader.pid) == ticks
    path = tmp_path / "run" / "s3.json"
    path.parent.mkdir()
    old = {"service": "s3", "pid": group_leader.pid, "started": ticks, "owner": STACK_OWNER}
    path.write_text(json.dumps(old))
    record = read_record(path, "s3")
    assert record is not None and record_alive(record)
    # the same pid with another start time is a reused pid: stale, and never signalled
    stale = PidRecord("s3", group_leader.pid, ticks + 1)
    assert not record_alive(stale)
    assert not stack.stop_record(stale, timeout=1.0)
    assert group_leader.poll() is None


def test_damaged_pid_file_counts_as_none_and_is_removed(tmp_path: Path) -> None:
    path = tmp_path / "run" / "mlflow.json"
    path.parent.mkdir()
    path.write_text("{not json")
    assert read_record(path, "mlflow") is None
    assert not path.exists()


def test_stale_pid_file_is_reported_then_cleaned_by_up(
    tmp_path: Path, listener: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(tmp_path, drift_ui_port=listener)
    s = Stack(settings)
    finished = subprocess.Popen(["true"])
    finished.wait()
    write_record(s.pid_file("drift-ui"), PidRecord("drift-ui", finished.pid, 1))

    row = next(r for r in s.status() if r.service == "drift-ui")
    assert row.state == "stopped"
    assert f"stale pid file (pid {finished.pid} is gone)" in row.detail
    assert f"port {listener}" in row.detail  # and why it could not start right now

    with pytest.raises(StackError, match="already in use"):  # `up` cleans, then refuses
        s.up(only=["drift-ui"])
    assert not s.pid_file("drift-ui").exists()


def test_down_stops_the_whole_group_of_what_the_stack_started(
    tmp_path: Path, group_leader: subprocess.Popen[bytes]
) -> None:
    s = Stack(settings_for(tmp_path))
    ticks = start_ticks(group_leader.pid)
    assert ticks is not None
    # the shell forks its background sleep when it gets the CPU: on a loaded machine, later
    assert wait_until(lambda: len(_group_members(group_leader.pid)) >= 2, timeout=30, every=0.05)
    record = PidRecord("drift-ui", group_leader.pid, ticks, STACK_OWNER)
    write_record(s.pid_file("drift-ui"), record)
    s.env_file.parent.mkdir(parents=True, exist_ok=True)
    s.env_file.write_text("export GENREOPS_HOME=x\n")
    events: list[tuple[str, str]] = []

    stopped = s.down(lambda service, state, detail: events.append((service, state)))

    assert stopped == ["drift-ui"]
    assert ("drift-ui", "stopped") in events
    group_leader.wait(timeout=10)  # our child: reaped here
    assert _group_members(group_leader.pid) == []  # the background sleep too
    assert not s.pid_file("drift-ui").exists()
    assert not s.env_file.exists()


def test_down_never_signals_a_reused_pid_nor_what_genreops_serve_started(
    tmp_path: Path, group_leader: subprocess.Popen[bytes]
) -> None:
    s = Stack(settings_for(tmp_path))
    ticks = start_ticks(group_leader.pid)
    assert ticks is not None
    # a record whose pid now belongs to another process (different start time)
    write_record(s.pid_file("prometheus"), PidRecord("prometheus", group_leader.pid, ticks - 1))
    # Triton as `genreops serve --detach` records it: no owner
    s.pid_file("triton").write_text(
        json.dumps({"pid": group_leader.pid, "started": ticks, "ports": {}, "repository": "/x"})
    )
    events: list[tuple[str, str, str]] = []

    assert s.down(lambda *event: events.append(event)) == []

    assert group_leader.poll() is None  # still running
    assert ("triton", "left running", f"pid {group_leader.pid}, started by {SERVE_OWNER}") in (
        events
    )
    assert s.pid_file("triton").exists()  # still `genreops serve`'s
    assert not s.pid_file("prometheus").exists()  # stale: cleaned


def test_status_of_a_stack_that_never_ran(tmp_path: Path) -> None:
    rows = Stack(settings_for(tmp_path)).status()
    assert [r.service for r in rows] == list(SERVICES)
    assert all(not r.healthy and r.pid is None for r in rows)
    assert {r.state for r in rows} <= {"stopped", "skipped"}
    assert rows[0].url == "http://127.0.0.1:4568"
    assert rows[2].url == "http://127.0.0.1:4200"


# --- the deployments ----------------------------------------------------------------------


def test_every_flow_is_deployed_under_its_own_name_with_typed_parameters(
    tmp_path: Path,
) -> None:
    from genreops.flows.deployments import HEAVY_QUEUE, TAG, build_deployments, deployment_names

    names = deployment_names()
    for flow in ("extract-features", "train-model", "register-best", "publish", "batch-predict"):
        assert f"{flow}/{flow}" in names
    assert len(set(names)) == len(names)
    built = {d.name: d for d in build_deployments(settings_for(tmp_path))}
    assert set(built) == {n.split("/")[0] for n in names}
    for deployment in built.values():
        assert TAG in deployment.tags
        assert deployment.description
        assert deployment.entrypoint.startswith("genreops.flows.")  # importable from any folder
        assert deployment.work_pool_name == "genreops"
        # a process worker starts runs where they were registered from (a `.env` there applies)
        assert deployment.job_variables == {"working_dir": str(Path.cwd())}
    # long CPU-bound runs share the heavy queue's limit; serving-side ones never wait on them
    heavy = {name for name, d in built.items() if d.work_queue_name == HEAVY_QUEUE}
    assert heavy == {"extract-features", "train-model", "pipeline", "retrain"}
    train = built["train-model"]._parameter_openapi_schema.model_dump()
    assert train["required"] == ["features_url"]
    assert train["properties"]["trials"]["type"] == "integer"
    assert train["properties"]["trials"]["default"] == 20
    assert "Optuna trials" in train["properties"]["trials"]["description"]
    families = train["properties"]["families"]["anyOf"]
    assert {"items": {"type": "string"}, "type": "array"} in families
    extract = built["extract-features"]._parameter_openapi_schema.model_dump()
    assert extract["properties"]["max_failed_share"]["type"] == "number"


def test_a_deployment_can_also_run_on_a_schedule(tmp_path: Path) -> None:
    from genreops.flows.deployments import DEPLOYMENTS, DeploymentSpec, build_deployments

    spec = DeploymentSpec(
        DEPLOYMENTS[0].flow, "every five minutes", interval_setting="drift_report_every_seconds"
    )
    (scheduled,) = build_deployments(settings_for(tmp_path), [spec])
    assert [s.schedule.interval.total_seconds() for s in scheduled.schedules] == [300]
    (on_demand,) = build_deployments(settings_for(tmp_path), [DEPLOYMENTS[0]])
    assert on_demand.schedules == []
    # the drift reports' schedule is a setting; 0 leaves them on demand
    report = next(spec for spec in DEPLOYMENTS if spec.name == "drift-report")
    (every_minute,) = build_deployments(
        settings_for(tmp_path, drift_report_every_seconds=60), [report]
    )
    assert [s.schedule.interval.total_seconds() for s in every_minute.schedules] == [60]
    (by_default,) = build_deployments(settings_for(tmp_path), [report])
    assert [s.schedule.interval.total_seconds() for s in by_default.schedules] == [300]
    off = settings_for(tmp_path, drift_report_every_seconds=0)
    assert build_deployments(off, [report])[0].schedules == []


def test_without_prometheus_it_is_skipped_with_how_to_get_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from genreops.platform import observability

    def absent() -> str:  # an uninstalled package cannot be produced on this machine
        raise observability.ObservabilityError(
            f"prometheus is not installed: {observability.PROMETHEUS_HINT}"
        )

    monkeypatch.setattr(observability, "find_prometheus", absent)
    s = Stack(settings_for(tmp_path))
    events: list[tuple[str, str, str]] = []

    rows = s.up(only=["prometheus"], on_event=lambda *event: events.append(event))

    assert [(service, state) for service, state, _ in events] == [("prometheus", "skipped")]
    assert "apt-get install prometheus" in events[0][2]
    row = next(r for r in rows if r.service == "prometheus")
    assert (row.state, row.healthy) == ("skipped", False)
    assert "apt-get install prometheus" in row.detail
    assert not s.pid_file("prometheus").exists()
    assert s.env_file.exists()  # the rest of the stack goes on


def test_a_damaged_pid_file_is_removed_as_stale_by_the_stack_and_refused_by_serve(
    tmp_path: Path,
) -> None:
    """Both commands read one format; the stack cleans up, `serve` refuses to guess."""
    from genreops.core.errors import GenreopsError
    from genreops.serving.triton.server import read_pid_file

    damaged = tmp_path / "run" / "triton.json"
    damaged.parent.mkdir()
    damaged.write_text('{"pid": "not a number"')
    with pytest.raises(GenreopsError, match="unreadable or damaged"):
        read_pid_file(damaged)
    assert damaged.exists()
    assert read_record(damaged, "triton") is None
    assert not damaged.exists()
