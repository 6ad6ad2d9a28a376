"""The real tritonserver from the nvidia-pytriton wheel, on a throwaway Python-backend repository.

One server is shared by the module (a start costs seconds); the tests that must start or stop a
server themselves start their own.
"""

from __future__ import annotations

import os
import queue
import subprocess
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from genreops.core.processes import port_in_use
from genreops.serving.triton.control import (
    is_ready,
    load_model,
    model_ready,
    repository_index,
    unload_model,
)
from genreops.serving.triton.errors import TritonModelError, TritonServerError
from genreops.serving.triton.install import (
    STAMP_NAME,
    STUB_NAME,
    find_tritonserver,
    prepare_backends,
)
from genreops.serving.triton.server import (
    TritonPorts,
    read_pid_file,
    start_triton,
    stop_from_pid_file,
    stop_triton,
    write_pid_file,
)
from helpers import free_port

pytestmark = pytest.mark.integration

NEGATIVE = "X must not be negative"

ADD_ONE = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            y = pb_utils.Tensor("Y", (x + 1).astype(np.float32))
            responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
"""

CHECKED = f"""
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            if (x < 0).any():
                error = pb_utils.TritonError(
                    f"{NEGATIVE} (got {{x.min()}})", pb_utils.TritonError.INVALID_ARG
                )
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                y = pb_utils.Tensor("Y", (x * 2).astype(np.float32))
                responses.append(pb_utils.InferenceResponse(output_tensors=[y]))
        return responses
"""

BROKEN = "def execute(self, requests:\n"  # a syntax error


def _config(name: str) -> str:
    return textwrap.dedent(
        f"""\
        name: "{name}"
        backend: "python"
        max_batch_size: 8
        input [ {{ name: "X" data_type: TYPE_FP32 dims: [ -1 ] }} ]
        output [ {{ name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }} ]
        dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
        instance_group [ {{ kind: KIND_CPU count: 1 }} ]
        """
    )


def make_repository(root: Path) -> Path:
    for name, code in {"add_one": ADD_ONE, "checked": CHECKED, "broken": BROKEN}.items():
        (root / name / "1").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(_config(name))
        (root / name / "1" / "model.py").write_text(code)
    return root


def free_ports() -> TritonPorts:
    return TritonPorts(http=free_port(), grpc=free_port(), metrics=free_port())


def live_processes(marker: Path) -> list[int]:
    """PIDs (not zombies) whose command line mentions ``marker``: a server and its stubs."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if str(marker) in cmdline and stat[stat.rfind(")") + 2] not in "ZX":
            found.append(int(entry.name))
    return found


@dataclass
class RunningTriton:
    process: subprocess.Popen[bytes]
    ports: TritonPorts
    repository: Path
    state_dir: Path
    log_path: Path

    @property
    def url(self) -> str:
        return self.ports.http_url


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_repository(tmp_path_factory.mktemp("triton-repo") / "models")


@pytest.fixture(scope="module")
def tritonserver(
    repository: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningTriton]:
    """A real tritonserver in explicit mode with only add_one loaded."""
    base = tmp_path_factory.mktemp("tritonserver")
    ports = free_ports()
    process = start_triton(
        repository,
        state_dir=base / "home",
        ports=ports,
        log_path=base / "tritonserver.log",
        load_models=["add_one"],
        timeout=120,
    )
    try:
        yield RunningTriton(process, ports, repository, base / "home", base / "tritonserver.log")
    finally:
        stop_triton(process)


def grpc_infer(ports: TritonPorts, model: str, x: np.ndarray) -> np.ndarray:
    client = grpcclient.InferenceServerClient(url=ports.grpc_url)
    try:
        tensor = grpcclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
        output = result.as_numpy("Y")
        assert output is not None
        return output
    finally:
        client.close()


def http_infer(ports: TritonPorts, model: str, x: np.ndarray) -> np.ndarray:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{ports.http}")
    try:
        tensor = httpclient.InferInput("X", list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        result = client.infer(model, [tensor])
        output = result.as_numpy("Y")
        assert output is not None
        return output
    finally:
        client.close()


# --- installation --------------------------------------------------------------------------


def test_the_wheel_holds_server_backends_and_our_pythons_stub() -> None:
    install = find_tritonserver()
    assert install.binary.name == "tritonserver" and os.access(install.binary, os.X_OK)
    assert (install.backends / "python" / "libtriton_python.so").is_file()
    assert install.stub.parent.name == "3.11" and install.stub.is_file()
    assert install.libs.is_dir() and install.version


def test_a_missing_wheel_says_how_to_install_it() -> None:
    with pytest.raises(TritonServerError, match=r"genreops-no-such-wheel is missing.*make setup"):
        find_tritonserver("genreops-no-such-wheel")


def test_backends_are_copied_once_and_refreshed_when_the_stamp_changes(tmp_path: Path) -> None:
    install = find_tritonserver()
    backends = prepare_backends(tmp_path)
    stub = backends / "python" / STUB_NAME
    assert backends == tmp_path / "triton" / "backends"
    assert os.access(stub, os.X_OK) and (backends / "python" / "libtriton_python.so").is_file()
    assert not (install.backends / "python" / STUB_NAME).exists()  # the venv is untouched
    first = stub.stat().st_ino

    assert prepare_backends(tmp_path) == backends
    assert stub.stat().st_ino == first  # reused, not copied again

    stamp = (backends / STAMP_NAME).read_text()
    (backends / STAMP_NAME).write_text(stamp.replace(install.version, "0.0.1"))
    prepare_backends(tmp_path)
    assert (backends / STAMP_NAME).read_text() == stamp
    assert stub.stat().st_ino != first
    assert [p.name for p in (tmp_path / "triton").iterdir()] == ["backends"]  # no leftovers


# --- a running server --------------------------------------------------------------------


def test_explicit_mode_loads_only_the_requested_model(tritonserver: RunningTriton) -> None:
    assert is_ready(tritonserver.url)
    states = {e["name"]: e.get("state") for e in repository_index(tritonserver.url)}
    assert states["add_one"] == "READY"
    assert set(states) == {"add_one", "checked", "broken"}
    assert model_ready(tritonserver.url, "add_one")
    assert not model_ready(tritonserver.url, "checked")


def test_inference_over_grpc_and_http(tritonserver: RunningTriton) -> None:
    x = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, 0.0]], dtype=np.float32)
    np.testing.assert_array_equal(grpc_infer(tritonserver.ports, "add_one", x), x + 1)
    np.testing.assert_array_equal(http_infer(tritonserver.ports, "add_one", x), x + 1)


def test_a_per_request_error_comes_back_verbatim_and_fails_only_its_request(
    tritonserver: RunningTriton,
) -> None:
    url = tritonserver.url
    load_model(url, "checked")
    try:
        assert model_ready(url, "checked")
        good = np.array([[1.0, 2.0]], dtype=np.float32)
        bad = np.array([[1.0, -2.0]], dtype=np.float32)
        np.testing.assert_array_equal(grpc_infer(tritonserver.ports, "checked", good), good * 2)

        with pytest.raises(InferenceServerException) as grpc_error:
            grpc_infer(tritonserver.ports, "checked", bad)
        assert f"{NEGATIVE} (got -2.0)" in str(grpc_error.value.message())
        assert grpc_error.value.status() == "StatusCode.INVALID_ARGUMENT"
        with pytest.raises(InferenceServerException) as http_error:
            http_infer(tritonserver.ports, "checked", bad)
        assert f"{NEGATIVE} (got -2.0)" in str(http_error.value.message())
        assert http_error.value.status() == "400"

        # Good and bad requests in flight together (the batcher may group them): only the
        # bad ones fail.
        client = grpcclient.InferenceServerClient(url=tritonserver.ports.grpc_url)
        results: queue.Queue[tuple[int, object]] = queue.Queue()
        try:
            for i in range(6):
                x = np.array([[float(i) if i % 2 == 0 else -float(i)]], dtype=np.float32)
                tensor = grpcclient.InferInput("X", [1, 1], "FP32")
                tensor.set_data_from_numpy(x)
                client.async_infer(
                    "checked",
                    [tensor],
                    callback=lambda result, error, i=i: results.put((i, error or result)),
                )
            answers = dict(results.get(timeout=30) for _ in range(6))
        finally:
            client.close()
        for i, answer in answers.items():
            if i % 2 == 0:
                assert isinstance(answer, grpcclient.InferResult)
                np.testing.assert_array_equal(answer.as_numpy("Y"), [[2.0 * i]])
            else:
                assert isinstance(answer, InferenceServerException)
                assert f"{NEGATIVE} (got {-float(i)})" in str(answer.message())

        assert is_ready(url)
        np.testing.assert_array_equal(grpc_infer(tritonserver.ports, "add_one", good), good + 1)
    finally:
        unload_model(url, "checked")
    assert not model_ready(url, "checked")
    states = {e["name"]: e.get("state") for e in repository_index(url)}
    assert states["checked"] == "UNAVAILABLE"


def test_a_broken_model_fails_to_load_with_tritons_message_and_the_server_stays_ready(
    tritonserver: RunningTriton,
) -> None:
    url = tritonserver.url
    with pytest.raises(TritonModelError) as caught:
        load_model(url, "broken")
    assert caught.value.model == "broken"
    assert "SyntaxError: '(' was never closed (model.py, line 1)" in caught.value.reason
    assert "could not load model 'broken'" in str(caught.value)

    assert is_ready(url)  # strict readiness is off: one broken model does not fail the server
    broken = next(e for e in repository_index(url) if e["name"] == "broken")
    assert broken["state"] == "UNAVAILABLE" and "SyntaxError" in broken["reason"]
    x = np.array([[7.0]], dtype=np.float32)
    np.testing.assert_array_equal(grpc_infer(tritonserver.ports, "add_one", x), x + 1)


def test_loading_a_model_the_repository_lacks_names_it(tritonserver: RunningTriton) -> None:
    with pytest.raises(TritonModelError, match=r"could not load model 'nosuch'.*'nosuch'"):
        load_model(tritonserver.url, "nosuch")
    assert is_ready(tritonserver.url)


@pytest.mark.parametrize("kind", ["HTTP", "gRPC", "metrics"])
def test_a_busy_port_is_refused_before_starting(
    tritonserver: RunningTriton, tmp_path: Path, kind: str
) -> None:
    taken = {"HTTP": tritonserver.ports.http, "gRPC": tritonserver.ports.grpc}
    taken["metrics"] = tritonserver.ports.metrics
    spare = free_ports()
    ports = TritonPorts(
        http=taken["HTTP"] if kind == "HTTP" else spare.http,
        grpc=taken["gRPC"] if kind == "gRPC" else spare.grpc,
        metrics=taken["metrics"] if kind == "metrics" else spare.metrics,
    )
    with pytest.raises(
        TritonServerError, match=f"the {kind} port 127.0.0.1:{taken[kind]} is already"
    ):
        start_triton(tritonserver.repository, state_dir=tmp_path, ports=ports, log_path=None)
    assert not live_processes(tmp_path)
    assert is_ready(tritonserver.url)


# --- servers of their own ----------------------------------------------------------------


def test_stop_from_pid_file_leaves_no_server_or_stub_behind(
    repository: Path, tmp_path: Path
) -> None:
    ports = free_ports()
    home = tmp_path / "home"
    process = start_triton(
        repository,
        state_dir=home,
        ports=ports,
        log_path=tmp_path / "t.log",
        load_models=["add_one"],
    )
    try:
        pid_path = tmp_path / "run" / "tritonserver.pid"
        write_pid_file(pid_path, process, ports, repository)
        recorded = read_pid_file(pid_path)
        assert recorded is not None
        assert (recorded.pid, recorded.ports, recorded.repository) == (
            process.pid,
            ports,
            repository.resolve(),
        )
        running = live_processes(home)
        assert process.pid in running and len(running) == 2  # the server and add_one's stub

        assert stop_from_pid_file(pid_path, timeout=60) is True
        assert live_processes(home) == []
        assert not pid_path.exists()
        assert not any(port_in_use("127.0.0.1", p) for p in (ports.http, ports.grpc))
        assert stop_from_pid_file(pid_path) is False  # nothing left to stop
    finally:
        stop_triton(process)
    assert process.wait(timeout=10) is not None


def test_a_pid_file_naming_another_program_is_stale(tmp_path: Path) -> None:
    pid_path = tmp_path / "tritonserver.pid"
    other = subprocess.Popen(["sleep", "60"])
    try:
        write_pid_file(pid_path, other, free_ports(), tmp_path)
        assert stop_from_pid_file(pid_path) is False
        assert other.poll() is None  # never signalled
        assert not pid_path.exists()

        write_pid_file(pid_path, other, free_ports(), tmp_path)
    finally:
        other.kill()
        other.wait()
    assert stop_from_pid_file(pid_path) is False  # its process is gone
    assert not pid_path.exists()


def test_a_damaged_pid_file_is_reported(tmp_path: Path) -> None:
    pid_path = tmp_path / "tritonserver.pid"
    assert read_pid_file(pid_path) is None
    pid_path.write_text("12345\n")
    with pytest.raises(TritonServerError, match=r"tritonserver\.pid is unreadable or damaged"):
        stop_from_pid_file(pid_path)


def test_start_fails_and_cleans_up_when_a_requested_model_cannot_load(
    repository: Path, tmp_path: Path
) -> None:
    ports = free_ports()
    home = tmp_path / "home"
    with pytest.raises(TritonModelError) as caught:
        start_triton(
            repository,
            state_dir=home,
            ports=ports,
            log_path=tmp_path / "t.log",
            load_models=["add_one", "broken"],
        )
    message = str(caught.value)
    assert "could not load model 'broken': not READY after startup" in message
    assert "broken: UNAVAILABLE Internal: SyntaxError: '(' was never closed" in message
    assert live_processes(home) == []
    assert not port_in_use("127.0.0.1", ports.http)


def test_start_refuses_unusable_arguments(repository: Path, tmp_path: Path) -> None:
    with pytest.raises(TritonServerError, match="nowhere does not exist"):
        start_triton(tmp_path / "nowhere", state_dir=tmp_path, ports=free_ports(), log_path=None)
    with pytest.raises(TritonServerError, match="unknown Triton model control mode 'bogus'"):
        start_triton(repository, state_dir=tmp_path, model_control="bogus", log_path=None)
    with pytest.raises(TritonServerError, match="load_models needs model control 'explicit'"):
        start_triton(
            repository,
            state_dir=tmp_path,
            model_control="none",
            load_models=["add_one"],
            log_path=None,
        )
    with pytest.raises(TritonServerError, match="three different ports"):
        start_triton(repository, state_dir=tmp_path, ports=TritonPorts(9, 9, 9), log_path=None)


def test_the_http_helpers_on_a_url_where_nothing_listens() -> None:
    url = f"127.0.0.1:{free_port()}"
    assert not is_ready(url)
    assert not model_ready(url, "add_one")
    with pytest.raises(TritonServerError, match=r"cannot reach Triton at http://127\.0\.0\.1"):
        load_model(url, "add_one")
    with pytest.raises(TritonServerError, match="cannot reach Triton"):
        repository_index(url)
