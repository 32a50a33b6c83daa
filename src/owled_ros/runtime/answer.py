"""Reading the model's answer: "<description> Action: <action phrase>. <reason>".

The answer is split on prompt.ACTION_MARKER: the description goes to parse_description
(objects and light state), the action phrase to vocab.Action.from_text, the rest is the
reasoning. It lives in runtime/ because the node parses every answer; data/describe.py,
which writes the reference descriptions, imports the parser from here, so one parser reads
both the training targets and the model's free text.

Confidence is the probability the model gave to the action it chose: the product of the
greedy-decoding probabilities (Generation.token_probs) of the tokens that spell the action
phrase after the marker. It is 0 when no action could be read from the answer.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from owled_ros.model.prompt import ACTION_MARKER
from owled_ros.schema import SceneObject, SceneResult
from owled_ros.vocab import Action, LightState, ObjectPosition

if TYPE_CHECKING:
    from owled_ros.model.vlm import Generation  # a type only: parsing needs no torch

_SENTENCE_END = re.compile(r"\.(?:\s|$)")  # a period not inside a number such as 5.5
_TARGET = re.compile(r"\btarget(?:\s+speed)?(?:\s+of)?\s*:?\s*(\d+(?:\.\d+)?)\s*m/s", re.IGNORECASE)

_LIGHT_COLORS = ((LightState.RED, "red"), (LightState.YELLOW, "yellow|amber"), (LightState.GREEN, "green"))
_CLASS_WORDS = (
    ("car", r"cars?|vehicles?|sedans?|suvs?|vans?"),
    ("truck", r"trucks?|lorr(?:y|ies)|bus(?:es)?"),
    ("pedestrian", r"pedestrians?|persons?|people|walkers?"),
    ("cyclist", r"cyclists?|bicycles?|bikes?|bikers?"),
)
_POSITION_WORDS = (
    (ObjectPosition.EGO_LANE, r"ego lane|our lane|same lane|my lane|crossing"),
    (ObjectPosition.LEFT_LANE, r"left lane"),
    (ObjectPosition.RIGHT_LANE, r"right lane"),
    (ObjectPosition.ROADSIDE, r"roadside|sidewalk|side of the road|shoulder|kerb|curb"),
)
_SENTENCE = re.compile(r"(?<!\d)\.(?!\d)|[;!?\n]")
_CLAUSE = re.compile(r",|\band\b|\bbut\b")
_DISTANCE = re.compile(r"(\d+(?:\.\d+)?)\s*(?:m|meters?|metres?)\b")


# ---- the description: objects and light state ------------------------------------------------
def _first(patterns: tuple, text: str):
    best = None
    for value, pattern in patterns:
        m = re.search(rf"\b(?:{pattern})\b", text)
        if m and (best is None or m.start() < best[0]):
            best = (m.start(), value)
    return best[1] if best else None


def light_from_text(text: str) -> LightState:
    """The first light colour named in text (red, yellow or amber, green); NONE when there is none."""
    return _first(_LIGHT_COLORS, text.lower()) or LightState.NONE


def _names_thing(low: str) -> bool:
    return bool(re.search(r"\blights?\b|\bstop signs?\b", low)) or _first(_CLASS_WORDS, low) is not None


def _clauses(text: str) -> list[str]:
    """Lower-case clauses, one thing each; a clause naming nothing ("25 m away") joins the one before."""
    out: list[str] = []
    for sentence in _SENTENCE.split(text):
        parts: list[str] = []
        for clause in _CLAUSE.split(sentence.lower()):
            if parts and not _names_thing(clause):
                parts[-1] += " " + clause
            else:
                parts.append(clause)
        out += parts
    return out


def parse_description(text: str) -> SceneResult:
    """Objects and light state in a description; unknown, negated or garbled clauses are skipped."""
    objects: list[SceneObject] = []
    light = LightState.NONE
    for low in _clauses(text if isinstance(text, str) else ""):
        if re.search(r"\bno\b", low):
            continue
        m = _DISTANCE.search(low)
        distance = float(m.group(1)) if m else None
        color = light_from_text(low) if re.search(r"\blights?\b", low) else LightState.NONE
        if color is not LightState.NONE:
            objects.append(SceneObject("traffic_light", ObjectPosition.EGO_LANE, distance))
            light = light if light is not LightState.NONE else color
            continue
        if re.search(r"\bstop signs?\b", low):
            objects.append(SceneObject("stop_sign", ObjectPosition.ROADSIDE, distance))
            continue
        cls = _first(_CLASS_WORDS, low)
        if cls is not None:
            position = _first(_POSITION_WORDS, low) or ObjectPosition.UNKNOWN
            objects.append(SceneObject(cls, position, distance))
    return SceneResult(text=text, objects=tuple(objects), traffic_light=light)


# ---- the whole answer: description, action, reasoning ----------------------------------------
@dataclass(frozen=True)
class ParsedAnswer:
    description: str
    action: Action
    reasoning: str
    stated_target_mps: float | None
    confidence: float


def _action_span(text: str) -> tuple[Action, int, int]:
    """(action, start, end) of the action phrase after the marker in `text`; (UNKNOWN, -1, -1) if none."""
    cut = text.find(ACTION_MARKER)
    if cut < 0:
        return Action.UNKNOWN, -1, -1
    start = cut + len(ACTION_MARKER)
    end_match = _SENTENCE_END.search(text, start)
    phrase = text[start : end_match.start() if end_match else len(text)]
    action = Action.from_text(phrase)
    if action is Action.UNKNOWN:
        return action, -1, -1
    pos = start + phrase.lower().replace("_", " ").find(action.phrase)
    return action, pos, pos + len(action.phrase)


def action_confidence(gen: Generation) -> float:
    """Product of the probabilities of the generated tokens that overlap the action phrase.

    The span is located in the concatenation of the per-token texts, so character offsets
    map to tokens exactly even where the full decode differs (stripping, special tokens).
    """
    raw = "".join(gen.token_texts)
    action, start, end = _action_span(raw)
    if action is Action.UNKNOWN:
        return 0.0
    prob, offset = 1.0, 0
    for tok, p in zip(gen.token_texts, gen.token_probs):
        if offset < end and offset + len(tok) > start:
            prob *= p
        offset += len(tok)
    return prob


def parse_answer(gen: Generation) -> ParsedAnswer:
    """Split "<description> Action: <phrase>. <reason>"; no marker means no action (UNKNOWN)."""
    text = gen.text.strip()
    cut = text.find(ACTION_MARKER)
    if cut < 0:
        return ParsedAnswer(text, Action.UNKNOWN, "", None, 0.0)
    after = text[cut + len(ACTION_MARKER) :]
    end_match = _SENTENCE_END.search(after)
    reasoning = after[end_match.end() :].strip() if end_match else ""
    target = _TARGET.search(after)
    return ParsedAnswer(
        description=text[:cut].strip(),
        action=_action_span(text)[0],
        reasoning=reasoning,
        stated_target_mps=float(target.group(1)) if target else None,
        confidence=action_confidence(gen),
    )
