"""The Dockerfile builds the project's own package and runs it as the deployment contract says."""

from __future__ import annotations

import fnmatch
import re
import shlex
import tomllib

import pytest

from cascade_gateway.cli import build_parser
from tests.deploy.contract import (
    CONFIG_PATH,
    DOCKERFILE,
    DOCKERIGNORE,
    LIVENESS_PATH,
    PORT,
    PROMETHEUS_MULTIPROC_DIR,
    ROOT,
    USER_ID,
    Stage,
    dockerfile_stages,
    exec_form,
    flag_value,
)

BASE_IMAGE = "python:3.11-slim"
# pip options that take a value, so their value is not mistaken for what is installed.
PIP_VALUE_OPTIONS = {"-w", "--wheel-dir", "-f", "--find-links", "-c", "--constraint", "-i"}
PIP_VALUE_OPTIONS |= {"--index-url", "-t", "--target", "--extra-index-url", "-r"}


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return dockerfile_stages(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final(stages: list[Stage]) -> Stage:
    return stages[-1]


@pytest.fixture(scope="module")
def cmd(final: Stage) -> list[str]:
    args = final.last("CMD")
    assert args is not None, "the final stage has no CMD"
    return exec_form(args)


def pip_commands(run: str) -> list[tuple[str, list[str]]]:
    """Each `pip install|wheel` in a RUN line: (subcommand, what it installs or builds)."""
    found = []
    for command in re.split(r"&&|;|\|\|", run):
        words = shlex.split(command)
        for i, word in enumerate(words):
            if word.endswith("pip") and i + 1 < len(words) and words[i + 1] in ("install", "wheel"):
                targets, skip = [], False
                for arg in words[i + 2 :]:
                    if skip:
                        skip = False
                    elif arg in PIP_VALUE_OPTIONS:
                        skip = True
                    elif not arg.startswith("-"):
                        targets.append(arg)
                found.append((words[i + 1], targets))
    return found


def test_every_stage_is_python_slim(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage: a builder and a runtime image"
    assert [s.base for s in stages] == [BASE_IMAGE] * len(stages)


def test_the_builder_builds_this_project_without_dev_extras(stages: list[Stage]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wheel_name = project["name"].replace("-", "_")
    builder = stages[0]
    copied = " ".join(builder.all("COPY"))
    assert "pyproject.toml" in copied and "cascade_gateway" in copied
    assert "README.md" in copied, "pyproject.toml reads README.md as the long description"
    commands = [c for run in builder.all("RUN") for c in pip_commands(run)]
    # README installs `.` (with the dev extra); the image builds `.`, then installs that wheel.
    assert ("wheel", ["."]) in commands
    installed = [t for sub, targets in commands if sub == "install" for t in targets]
    assert installed, "the builder installs the wheel it built"
    assert all(t == "." or t.startswith(f"/dist/{wheel_name}-") for t in installed), installed
    assert "[dev]" not in DOCKERFILE.read_text(encoding="utf-8")


def test_the_runtime_stage_has_no_build_tools(final: Stage) -> None:
    runs = " ".join(final.all("RUN"))
    assert not re.search(r"apt-get install|apk add|gcc|build-essential", runs)
    for _, targets in (c for run in final.all("RUN") for c in pip_commands(run)):
        assert not targets, f"the runtime stage installs {targets}: copy them from the builder"
    assert any("--from=" in copy for copy in final.all("COPY"))


def test_runs_as_the_non_root_user_the_manifests_expect(final: Stage) -> None:
    user = final.last("USER")
    assert user is not None, "no USER: the container would run as root"
    uid = user.split(":")[0]
    assert uid not in ("root", "0")
    assert uid == str(USER_ID), "numeric, so Kubernetes' runAsNonRoot can verify it"


def test_working_directory_is_the_users(final: Stage) -> None:
    # The default storage, sqlite:///cascade-gateway.db, is relative to it.
    workdir = final.last("WORKDIR")
    assert workdir is not None
    assert any(
        re.search(rf"install -d -o {USER_ID} -g {USER_ID} .*{re.escape(workdir)}\b", run)
        for run in final.all("RUN")
    ), f"{workdir} is not created for uid {USER_ID}"


def test_environment(final: Stage) -> None:
    env = dict(word.split("=", 1) for args in final.all("ENV") for word in shlex.split(args))
    assert env["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"  # no network at start-up
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"  # the root filesystem is read-only
    assert env["PYTHONUNBUFFERED"] == "1"
    assert env["PROMETHEUS_MULTIPROC_DIR"] == PROMETHEUS_MULTIPROC_DIR


def test_cmd_is_a_valid_serve_command_line(final: Stage, cmd: list[str]) -> None:
    assert exec_form(final.last("ENTRYPOINT") or "null") == ["cascade-gateway"]
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert "cascade-gateway" in scripts["scripts"]
    args = build_parser().parse_args(cmd)
    assert (args.command, args.config, args.host) == ("serve", CONFIG_PATH, "0.0.0.0")
    assert args.port == PORT
    assert args.workers == 2


def test_ships_a_default_config_where_cmd_reads_it(final: Stage, cmd: list[str]) -> None:
    assert f"config/example.yaml {flag_value(cmd, '--config')}" in final.all("COPY")


def test_exposes_the_port_cmd_listens_on(final: Stage, cmd: list[str]) -> None:
    assert final.all("EXPOSE") == [flag_value(cmd, "--port")] == [str(PORT)]


def test_healthcheck_probes_liveness_on_cmd_port(final: Stage, cmd: list[str]) -> None:
    healthcheck = final.last("HEALTHCHECK")
    assert healthcheck is not None
    probe = exec_form(healthcheck[healthcheck.index("CMD ") + 4 :])
    assert probe[0] == "python", "slim images have no curl or wget"
    url = f"http://127.0.0.1:{flag_value(cmd, '--port')}{LIVENESS_PATH}"
    assert f"'{url}'" in probe[-1]


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; `!` re-includes; a dir covers its files."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/").removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(p, pattern) for p in prefixes + parts):
            ignored = not negated
    return ignored


def test_build_context_holds_what_copy_needs_and_nothing_local(stages: list[Stage]) -> None:
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        word
        for stage in stages
        for copy in stage.all("COPY")
        if "--from=" not in copy
        for word in copy.split()[:-1]
    ]
    assert sources
    for source in sources:
        assert (ROOT / source).exists(), source
        assert not _ignored(source, patterns), f"{source} is excluded by .dockerignore"
    for local in (".venv/bin/python", ".git/HEAD", "tests/conftest.py"):
        assert _ignored(local, patterns), f"{local} would be sent to the build"
