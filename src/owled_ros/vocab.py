"""The fixed vocabularies shared by the scene generator, the model's answers and owled_msgs.

One definition here; the integer values equal the constants in owled_msgs/msg/*.msg
(a test checks that they agree).
"""
from __future__ import annotations

from enum import IntEnum


class Action(IntEnum):
    UNKNOWN = 0
    STOP = 1
    SLOW_DOWN = 2
    KEEP_SPEED = 3
    ACCELERATE = 4
    CHANGE_LANE_LEFT = 5
    CHANGE_LANE_RIGHT = 6

    @property
    def phrase(self) -> str:
        """The words the model says for this action ("slow down")."""
        return self.name.lower().replace("_", " ")

    @classmethod
    def from_text(cls, text: str) -> "Action":
        """First action phrase found in free text, or UNKNOWN."""
        low = text.lower().replace("_", " ")
        best: tuple[int, Action] | None = None
        for action in cls:
            if action is cls.UNKNOWN:
                continue
            pos = low.find(action.phrase)
            if pos >= 0 and (best is None or pos < best[0]):
                best = (pos, action)
        return best[1] if best else cls.UNKNOWN


class LightState(IntEnum):
    NONE = 0
    RED = 1
    YELLOW = 2
    GREEN = 3


class ObjectPosition(IntEnum):
    UNKNOWN = 0
    EGO_LANE = 1
    LEFT_LANE = 2
    RIGHT_LANE = 3
    ROADSIDE = 4

    @property
    def phrase(self) -> str:
        return {
            ObjectPosition.UNKNOWN: "nearby",
            ObjectPosition.EGO_LANE: "in the ego lane",
            ObjectPosition.LEFT_LANE: "in the left lane",
            ObjectPosition.RIGHT_LANE: "in the right lane",
            ObjectPosition.ROADSIDE: "at the roadside",
        }[self]


OBJECT_CLASSES: tuple[str, ...] = ("car", "truck", "pedestrian", "cyclist", "traffic_light", "stop_sign")
