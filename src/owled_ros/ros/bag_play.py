"""`owled bag play`: publish a bag's messages on their topics, in log-time order, with /clock.

Messages go out as the bag's serialized CDR bytes (rclpy publishes bytes as they are), so
any type whose Python message package is installed plays without being decoded. /clock
(rosgraph_msgs/Clock) carries the bag's log time, before every message and every
CLOCK_PERIOD_S of wall time in between, so nodes with use_sim_time follow the bag; with
--loop the bag time starts over on each pass (a node sees a clock reset).
"""
from __future__ import annotations

import importlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import rclpy
from rclpy.duration import Duration
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.time import Time
from rosgraph_msgs.msg import Clock

from owled_ros.data.bag_read import bag_topics, open_bag
from owled_ros.errors import OwledError

CLOCK_PERIOD_S = 0.05
DEPTH = 10
ACK_TIMEOUT_S = 2.0
LINGER_S = 0.5
"""Stay up after the last message: best-effort subscribers never acknowledge, and a publisher
destroyed right after publishing loses the last sample on its way to them."""


def message_class(msgtype: str) -> type | None:
    """The rclpy class of "pkg/msg/Name", or None when that package is not installed."""
    pkg, _, name = msgtype.partition("/msg/")
    try:
        return getattr(importlib.import_module(f"{pkg}.msg"), name)
    except (ImportError, AttributeError, ValueError):
        return None


@dataclass(frozen=True)
class PlayOptions:
    rate: float = 1.0
    loop: bool = False
    topics: tuple[str, ...] | None = None
    """Only these topics (default: all of the bag's)."""
    clock: bool = True
    wait_subscribers: int = 0
    """Before playing, wait until every played topic has this many subscribers."""
    wait_timeout_s: float = 60.0
    delay_s: float = 0.0
    """Pause between the subscribers' match and the first message, as `ros2 bag play --delay`:
    a publisher counts a subscriber before that subscriber has matched it back, and a
    best-effort subscriber (sensor-data QoS) drops what comes in between."""

    def __post_init__(self) -> None:
        if not self.rate > 0:
            raise OwledError(f"--rate must be positive, got {self.rate}")
        if self.wait_subscribers < 0 or not self.wait_timeout_s > 0:
            raise OwledError("--wait-subscribers must be >= 0 and --wait-timeout > 0")
        if not self.delay_s >= 0:
            raise OwledError(f"--delay must be >= 0, got {self.delay_s}")


def _classes(path: Path, topics: dict[str, str], wanted: tuple[str, ...] | None, clock: bool) -> dict[str, type]:
    """topic -> rclpy class for the topics to play; OwledError naming the bag and topic otherwise.

    A recorded /clock is not replayed when the player publishes its own."""
    names = list(wanted) if wanted else [t for t in sorted(topics) if not (clock and t == "/clock")]
    classes = {}
    for topic in names:
        if topic not in topics:
            raise OwledError(f"{path}: topic {topic} not in the bag; topics: {', '.join(sorted(topics)) or 'none'}")
        cls = message_class(topics[topic])
        if cls is None:
            raise OwledError(f"{path}: topic {topic}: message type {topics[topic]} is not installed (no Python package for it)")
        classes[topic] = cls
    return classes


def _wait_for_subscribers(path: Path, pubs: dict[str, Publisher], count: int, timeout_s: float) -> None:
    end = time.monotonic() + timeout_s
    while rclpy.ok():
        short = [t for t, p in pubs.items() if p.get_subscription_count() < count]
        if not short:
            return
        if time.monotonic() > end:
            raise OwledError(f"{path}: fewer than {count} subscribers on {', '.join(short)} after {timeout_s:g} s")
        time.sleep(0.05)


def play(path: Path, options: PlayOptions, log: Callable[[str], None] = print) -> int:
    """Publish the bag (once, or until interrupted with loop); the number of messages published."""
    path = Path(path)
    with open_bag(path) as reader:
        topics = bag_topics(reader)
        classes = _classes(path, topics, options.topics, options.clock)
        conns = [c for c in reader.connections if c.topic in classes]
        rclpy.init()
        node = rclpy.create_node("owled_bag_player")
        try:
            qos = QoSProfile(depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE)
            pubs = {t: node.create_publisher(cls, t, qos) for t, cls in classes.items()}
            clock = node.create_publisher(Clock, "/clock", qos) if options.clock else None

            def tick(bag_ns: int) -> None:
                if clock is not None:
                    clock.publish(Clock(clock=Time(nanoseconds=bag_ns).to_msg()))

            _wait_for_subscribers(path, pubs, options.wait_subscribers, options.wait_timeout_s)
            time.sleep(options.delay_s)
            log(f"playing {path}: {', '.join(pubs)} at {options.rate:g}x" + (", /clock" if clock else ""))
            count, started = 0, time.monotonic()
            while rclpy.ok():
                wall0, bag0 = time.monotonic(), None
                for conn, log_ns, raw in reader.messages(connections=conns):
                    bag0 = log_ns if bag0 is None else bag0
                    target = wall0 + (log_ns - bag0) / 1e9 / options.rate
                    while rclpy.ok() and (now := time.monotonic()) < target:
                        tick(bag0 + int((now - wall0) * options.rate * 1e9))
                        time.sleep(min(CLOCK_PERIOD_S, target - now))
                    if not rclpy.ok():
                        break
                    tick(log_ns)
                    pubs[conn.topic].publish(bytes(raw))
                    count += 1
                if not options.loop:
                    break
            for pub in pubs.values():
                pub.wait_for_all_acked(Duration(seconds=ACK_TIMEOUT_S))
            time.sleep(LINGER_S)
            log(f"played {count} messages in {time.monotonic() - started:.1f} s")
            return count
        finally:
            node.destroy_node()
            rclpy.try_shutdown()
