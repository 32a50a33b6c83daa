"""The launch files, read as Python syntax trees (launch_ros cannot be installed here).

Checked: the executable is a console script of setup.py, the params files exist and hold
only parameters the node declares, parameter dicts and remaps name real parameters and
topics, and every LaunchConfiguration is declared.
"""
from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest
import yaml

from owled_ros.ros.params import BUILTIN_PARAMETERS, PARAMETER_NAMES, PARAMETERS

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))
KNOWN = set(PARAMETER_NAMES) | set(BUILTIN_PARAMETERS)
DEFAULTS = {spec.name: spec.default for spec in PARAMETERS}


def _calls(tree: ast.AST, name: str) -> list[ast.Call]:
    return [n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", getattr(n.func, "attr", None)) == name]


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _console_scripts() -> dict[str, str]:
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values):
                if isinstance(key, ast.Constant) and key.value == "console_scripts":
                    entries = [e.value for e in value.elts]
                    return {e.split("=")[0].strip(): e.split("=")[1].strip() for e in entries}
    raise AssertionError("setup.py has no console_scripts")


def _params_files(path: Path) -> dict[str, dict]:
    """config/<name>.yaml -> its parameters, for every *.yaml string in a launch file."""
    tree = ast.parse(path.read_text())
    names = [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str) and n.value.endswith(".yaml")]
    return {name: _yaml_params(ROOT / "config" / name) for name in names}


def _yaml_params(path: Path) -> dict:
    assert path.is_file(), f"{path} does not exist"
    data = yaml.safe_load(path.read_text())
    keys = [k for k in data if k.split("/")[-1] == "owled_node"]
    assert keys == list(data), f"{path}: sections {list(data)} do not all address owled_node"
    return {k: v for key in keys for k, v in data[key]["ros__parameters"].items()}


@pytest.fixture(params=LAUNCH_FILES, ids=lambda p: p.name)
def launch_file(request) -> Path:
    return request.param


def test_there_are_two_launch_files() -> None:
    assert {p.name for p in LAUNCH_FILES} == {"owled.launch.py", "owled_carla.launch.py"}


def test_node_executable_is_an_entry_point(launch_file: Path) -> None:
    scripts = _console_scripts()
    nodes = _calls(ast.parse(launch_file.read_text()), "Node")
    assert nodes
    for call in nodes:
        assert _keyword(call, "package").value == "owled_ros"
        executable = _keyword(call, "executable").value
        assert executable in scripts, f"{executable} is not a console script of setup.py"
        module, func = scripts[executable].split(":")
        assert callable(getattr(importlib.import_module(module), func))


def test_params_files_exist_and_declare_only_known_parameters(launch_file: Path) -> None:
    files = _params_files(launch_file)
    assert files, "the launch file loads no params file"
    for name, params in files.items():
        assert set(params) <= KNOWN, f"{name}: undeclared parameters {sorted(set(params) - KNOWN)}"


def test_parameter_dicts_name_declared_parameters(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    for call in _calls(tree, "Node"):
        for item in _keyword(call, "parameters").elts:
            if isinstance(item, ast.Dict):
                keys = {k.value for k in item.keys}
                assert keys <= KNOWN, f"undeclared parameters {sorted(keys - KNOWN)}"


def test_remaps_start_from_the_topics_the_node_subscribes(launch_file: Path) -> None:
    """A remap from a name the node never uses silently does nothing."""
    topics = {DEFAULTS["camera_topic"], DEFAULTS["state_topic"]}
    for params in _params_files(launch_file).values():
        topics |= {params[k] for k in ("camera_topic", "state_topic") if k in params}
    for call in _calls(ast.parse(launch_file.read_text()), "Node"):
        for pair in _keyword(call, "remappings").elts:
            assert pair.elts[0].value in topics, f"remap from {pair.elts[0].value}, which the node does not use"


def test_launch_configurations_are_declared(launch_file: Path) -> None:
    tree = ast.parse(launch_file.read_text())
    declared = {c.args[0].value for c in _calls(tree, "DeclareLaunchArgument")}
    used = {c.args[0].value for c in _calls(tree, "LaunchConfiguration")}
    assert used <= declared, f"undeclared launch arguments {sorted(used - declared)}"


def test_owled_yaml_lists_every_parameter_with_its_default() -> None:
    params = _yaml_params(ROOT / "config" / "owled.yaml")
    assert params == DEFAULTS


def test_carla_yaml_uses_the_bridge_topics_and_sim_time() -> None:
    params = _yaml_params(ROOT / "config" / "carla.yaml")
    assert params["camera_topic"] == "/carla/ego_vehicle/rgb_front/image" and params["camera_type"] == "image"
    assert params["state_topic"] == "/carla/ego_vehicle/odometry" and params["state_type"] == "odometry"
    assert params["use_sim_time"] is True
