"""The Dockerfile's structure: torch only in the export stage, the runtime configured the way the
server reads its settings, health and ports; the build context lets through what is copied.
"""

import re
import shlex
import tomllib

from deploy_support import ROOT, dockerfile_stages, exec_form, health_services, service_env_names
from service.config import Config, from_env

STAGES = dockerfile_stages()
RUNTIME = STAGES["runtime"]


def test_stages_and_model_source_argument():
    assert {"models-export", "models-prebuilt", "models", "runtime-deps", "runtime"} <= STAGES.keys()
    assert list(STAGES)[-1] == "runtime", "a plain `docker build` must produce the runtime image"
    assert STAGES[""].args("ARG") == ["MODEL_SOURCE=prebuilt"]
    assert STAGES["models"].base == "models-${MODEL_SOURCE}"
    assert STAGES["models-prebuilt"].args("COPY") == ["model_repository/ /models/"]
    assert any("python -m export --repository /models" in run for run in STAGES["models-export"].args("RUN"))


def test_torch_is_pinned_from_the_cpu_index_in_the_export_stage_only():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (pin,) = [d for d in pyproject["project"]["optional-dependencies"]["export"] if d.startswith("torch")]
    runs = " ".join(STAGES["models-export"].args("RUN"))
    assert f"--index-url https://download.pytorch.org/whl/cpu {pin}" in runs
    for name in ("runtime-deps", "runtime"):
        text = " ".join(rest for _, rest in STAGES[name].instructions)
        assert "torch" not in text and "[export" not in text, name
    assert not any(d.startswith("torch") for d in pyproject["project"]["dependencies"])


def test_runtime_copies_only_the_venv_models_and_health_check():
    copies = RUNTIME.args("COPY")
    assert copies == ["--from=runtime-deps /opt/venv /opt/venv", "--from=models /models /models",
                      "docker/healthcheck.py /opt/sparse-adder/healthcheck.py"]


def test_runtime_settings_are_the_servers():
    env = RUNTIME.env()
    adder = {k: v for k, v in env.items() if k.startswith("ADDER_")}
    assert set(adder) <= service_env_names()
    config = from_env(adder)
    assert config.host == "0.0.0.0"
    assert str(config.model_repository) == "/models"
    assert RUNTIME.args("EXPOSE") == [f"{Config().http_port} {Config().grpc_port} {Config().metrics_port}"]
    assert (config.http_port, config.grpc_port, config.metrics_port) == \
        (Config().http_port, Config().grpc_port, Config().metrics_port)
    assert env["HOME"] == "/tmp", "the only writable place under a read-only root filesystem"


def test_fixed_non_root_user_and_entrypoint():
    (user,) = RUNTIME.args("USER")
    assert re.fullmatch(r"(\d+):(\d+)", user) and int(user.split(":")[0]) >= 10000
    (entrypoint,) = RUNTIME.args("ENTRYPOINT")
    assert exec_form(entrypoint) == ["python", "-m", "service"]


def test_healthcheck_speaks_grpc_health_on_known_names():
    (healthcheck,) = RUNTIME.args("HEALTHCHECK")
    options, _, command = healthcheck.partition(" CMD ")
    argv = exec_form(command.strip())
    assert argv[:2] == ["python", "/opt/sparse-adder/healthcheck.py"]
    assert set(argv[2:]) <= health_services() and argv[2:]
    assert "--start-period=" in options


def test_dockerignore_lets_every_copied_source_through():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines, "an allow-list: everything else stays out of the build context"
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for stage in STAGES.values():
        for copy in stage.args("COPY"):
            words = [w for w in shlex.split(copy) if not w.startswith("--")]
            if copy.startswith("--from="):
                continue
            for source in words[:-1]:
                assert source.rstrip("/") in allowed, f"{source} ({stage.name}) is not in .dockerignore's allow-list"
