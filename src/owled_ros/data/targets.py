"""What the model is taught to say for a generated scene: the frame answer and the DriveLM QA pairs."""
from __future__ import annotations

from owled_ros.data.describe import action_answer, describe_scene
from owled_ros.data.drivelm import QA, frame_qa
from owled_ros.data.scenes import Scene
from owled_ros.model.prompt import ACTION_MARKER


def frame_answer(scene: Scene) -> str:
    """The node's per-frame answer: the reference description, then the expert's action and reason."""
    return f"{describe_scene(scene)} {ACTION_MARKER} {action_answer(scene.expert)}"


def scene_qa(scene: Scene) -> list[QA]:
    return [QA(category, qa["Q"], qa["A"]) for category, items in frame_qa(scene).items() for qa in items]
