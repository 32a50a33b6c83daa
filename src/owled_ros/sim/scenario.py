"""A MetaDrive scenario as plain, checked options (standard library only: both venvs import it)."""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

PHYSICS_STEP_S = 0.02
DECISION_REPEAT = 5
STEP_S = PHYSICS_STEP_S * DECISION_REPEAT
"""One world step: 0.1 s of simulated time (MetaDrive's default 5 physics steps of 20 ms)."""
BLOCKS = "SCrRXTOy"
"""MetaDrive's procedural block ids: Straight, Curve, in/out ramp (r, R), interseXion, T junction,
roundabOut, merge (y). Straights and curves keep the ego on a multi-lane road."""


class ScenarioError(ValueError):
    """An option outside what the simulator supports; the message names it."""


@dataclass(frozen=True)
class Scenario:
    seed: int = 0
    lanes: int = 3
    traffic_density: float = 0.15
    blocks: str = "SCSS"
    """The road, one MetaDrive block id per block (see BLOCKS); its length is the route's."""
    initial_speed_mps: float = 10.0
    """The ego starts moving (traffic starts from rest), so a model that keeps its speed still drives."""
    width: int = 400
    height: int = 224

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise ScenarioError(f"seed must be >= 0, got {self.seed}")
        if not 1 <= self.lanes <= 6:
            raise ScenarioError(f"lanes must be in 1..6, got {self.lanes}")
        if not 0.0 <= self.traffic_density <= 1.0:
            raise ScenarioError(f"traffic density must be in [0, 1], got {self.traffic_density}")
        if not re.fullmatch(f"[{BLOCKS}]{{1,12}}", self.blocks):
            raise ScenarioError(f"blocks must be 1..12 of the MetaDrive block ids {BLOCKS}, got {self.blocks!r}")
        if not 0.0 <= self.initial_speed_mps <= 30.0:
            raise ScenarioError(f"initial speed must be in [0, 30] m/s, got {self.initial_speed_mps}")
        if not (64 <= self.width <= 1280 and 64 <= self.height <= 720):
            raise ScenarioError(f"frame size must be within 64x64..1280x720, got {self.width}x{self.height}")

    def as_dict(self) -> dict:
        return asdict(self)
