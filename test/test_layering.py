"""The layering rules of docs/design.md, read from the source (every import, also inside functions).

Why: the vehicle path must not drag the scene renderer or the trainer along, and a model must
not know how it is compressed; a rule nobody checks erodes one convenient import at a time.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "owled_ros"
CORE = ("model", "data", "prune", "deploy", "train", "eval", "runtime")
ROS_MODULES = ("rclpy", "owled_ros.ros", "owled_msgs", "sensor_msgs", "std_msgs", "diagnostic_msgs", "geometry_msgs")
FORBIDDEN = {
    "model": ("prune", "deploy", "eval", "data", "train"),
    "runtime": ("data", "prune", "train"),
    "deploy": ("prune", "train"),
}


def imported_modules(source: str, package: str) -> set[str]:
    """Absolute module names a file imports, relative imports resolved against its package."""
    tree = ast.parse(source)
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return names


def is_within(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        package = ".".join(("owled_ros",) + path.relative_to(PACKAGE).parent.parts)
        for name in sorted(imported_modules(path.read_text(), package)):
            if any(is_within(name, prefix) for prefix in forbidden):
                found.append(f"{path.relative_to(PACKAGE)} imports {name}")
    return found


@pytest.mark.parametrize("layer", CORE)
def test_core_never_imports_ros(layer: str) -> None:
    assert violations(layer, ROS_MODULES) == []


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_only_what_it_may(layer: str) -> None:
    forbidden = tuple(f"owled_ros.{name}" for name in FORBIDDEN[layer])
    assert violations(layer, forbidden) == []


def test_the_checker_sees_function_level_and_relative_imports() -> None:
    """The rule test must be able to fail: a nested relative import is found."""
    source = "def f():\n    from ..prune import owl\n    import rclpy\n"
    names = imported_modules(source, "owled_ros.model")
    assert "owled_ros.prune.owl" in names and "rclpy" in names
