"""package.xml and setup.py agree with the code, checked without building anything.

A ROS package is a name in the ament index (share/ament_index/resource_index/packages),
or launch / launch_ros, which the launch files need but no registry ships.
"""
from __future__ import annotations

import ast
import os
import xml.etree.ElementTree as ET
from glob import glob
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "owled_ros"
LAUNCH_PACKAGES = {"launch", "launch_ros"}
# Needed at run time but never imported by name: rclpy.lifecycle serves lifecycle_msgs services.
NOT_IMPORTED = {"lifecycle_msgs"}


def _ament_packages() -> set[str]:
    found = set()
    for prefix in os.environ["AMENT_PREFIX_PATH"].split(os.pathsep):
        index = Path(prefix) / "share" / "ament_index" / "resource_index" / "packages"
        if index.is_dir():
            found |= {p.name for p in index.iterdir()}
    return found | LAUNCH_PACKAGES


def _imported_roots(files: list[Path]) -> set[str]:
    roots = set()
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(), str(file))):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                roots.add(node.module.split(".")[0])
    return roots


def _package_xml() -> ET.Element:
    return ET.parse(ROOT / "package.xml").getroot()


def _run_depends() -> set[str]:
    tags = ("depend", "exec_depend")
    return {el.text.strip() for tag in tags for el in _package_xml().iter(tag)}


def test_ros_imports_and_package_xml_agree() -> None:
    ros = _ament_packages() - {"owled_ros"}
    used = _imported_roots(sorted(SRC.rglob("*.py")) + sorted((ROOT / "launch").glob("*.py"))) & ros
    declared = _run_depends() & ros
    assert used - declared == set(), f"imported but not in package.xml: {sorted(used - declared)}"
    assert declared - used - NOT_IMPORTED == set(), f"in package.xml but never imported: {sorted(declared - used - NOT_IMPORTED)}"


def test_core_never_imports_ros() -> None:
    ros = _ament_packages()
    for part in ("model", "data", "prune", "eval", "runtime"):
        files = sorted((SRC / part).rglob("*.py"))
        leaked = _imported_roots(files) & ros
        assert not leaked, f"src/owled_ros/{part} imports ROS packages {sorted(leaked)}"


def test_package_name_matches_setup() -> None:
    setup = ast.parse((ROOT / "setup.py").read_text())
    names = [n.value.value for n in ast.walk(setup) if isinstance(n, ast.Assign) and n.targets[0].id == "package_name"]
    assert names == [_package_xml().findtext("name")]


def _data_files() -> list[tuple[str, list[str]]]:
    """setup.py's data_files with package_name substituted and glob() evaluated in the repo root."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") == "setup")
    expr = next(k.value for k in call.keywords if k.arg == "data_files")
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        return eval(compile(ast.Expression(expr), "setup.py", "eval"), {"glob": glob, "package_name": "owled_ros"})
    finally:
        os.chdir(cwd)


def test_setup_data_files_exist() -> None:
    entries = dict(_data_files())
    assert entries["share/ament_index/resource_index/packages"] == ["resource/owled_ros"]
    for files in entries.values():
        for file in files:
            assert (ROOT / file).is_file(), file
    assert {Path(f).name for f in entries["share/owled_ros/launch"]} >= {"owled.launch.py", "owled_carla.launch.py"}
    assert {Path(f).name for f in entries["share/owled_ros/config"]} >= {"owled.yaml", "carla.yaml", "fastdds_localhost.xml"}
    assert entries["share/owled_ros"] == ["package.xml"]
    shipped = {p.name for p in (ROOT / "models" / "default").iterdir()}  # an installed node finds the default model
    assert {Path(f).name for f in entries["share/owled_ros/models/default"]} == shipped
