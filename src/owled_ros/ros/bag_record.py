"""`owled bag record`: topics into an mcap rosbag2 through raw subscriptions (nothing decoded).

A topic is subscribed as soon as a publisher of it shows up (its type comes from the graph),
with the reliability its publishers offer (a reliable subscription never matches a
best-effort publisher). Log time is the wall clock at receipt, so the times of different
topics in one recording compare. Recording stops on SIGINT / SIGTERM or after --duration and
the bag is complete either way (written beside --out, renamed when closed). Types the rosbags
typestore lacks (owled_msgs, ...) are read from the .msg files under AMENT_PREFIX_PATH.

stdout, one line each: `recording TOPIC (TYPE)` when a topic is subscribed, and with --echo a
JSON object {"topic", "log_ns", "msg"} per message of the echoed topics.
"""
from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from functools import partial
from pathlib import Path
from typing import Any

import rclpy
from rclpy.executors import SingleThreadedExecutor
from rclpy.signals import SignalHandlerOptions
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosbags.rosbag2 import Writer
from rosbags.typesys import Stores, TypesysError, get_types_from_msg, get_typestore
from rosbags.typesys.store import Typestore

from owled_ros.data.bag_make import open_bag_writer
from owled_ros.data.bag_read import to_plain
from owled_ros.errors import OwledError
from owled_ros.ros.bag_play import message_class

DISCOVERY_PERIOD_S = 0.2
DEPTH = 100


def installed_typestore() -> Typestore:
    """The Kilted typestore plus every message definition installed under AMENT_PREFIX_PATH it lacks."""
    store = get_typestore(Stores.ROS2_KILTED)
    extra: dict = {}
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        for msg_file in sorted(Path(prefix, "share").glob("*/msg/*.msg")):
            name = f"{msg_file.parent.parent.name}/msg/{msg_file.stem}"
            if name not in store.fielddefs and name not in extra:
                try:
                    extra.update(get_types_from_msg(msg_file.read_text(), name))
                except TypesysError:
                    continue  # a definition rosbags cannot parse: its topics are reported as not installed
    store.register(extra)
    return store


class Recorder:
    def __init__(self, node: Node, writer: Writer, topics: list[str], echo: set[str]) -> None:
        self.node, self.writer, self.echo = node, writer, echo
        self.pending = set(topics)
        self.counts: dict[str, int] = {}
        self.store = installed_typestore()
        self._subs: list = []

    def discover(self) -> None:
        for topic, types in self.node.get_topic_names_and_types():
            if topic in self.pending and types:
                self.pending.discard(topic)
                self._subscribe(topic, types[0])

    def _subscribe(self, topic: str, msgtype: str) -> None:
        cls = message_class(msgtype)
        if cls is None or msgtype not in self.store.fielddefs:
            print(f"owled bag record: not recording {topic}: message type {msgtype} is not installed", file=sys.stderr)
            return
        try:
            conn = self.writer.add_connection(topic, msgtype, typestore=self.store)
        except TypesysError as err:
            print(f"owled bag record: not recording {topic}: {err}", file=sys.stderr)
            return
        offered = [p.qos_profile.reliability for p in self.node.get_publishers_info_by_topic(topic)]
        reliable = bool(offered) and all(r == ReliabilityPolicy.RELIABLE for r in offered)
        qos = QoSProfile(depth=DEPTH, reliability=ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT)
        self._subs.append(self.node.create_subscription(cls, topic, partial(self._on_message, topic, msgtype, conn), qos, raw=True))
        self.counts[topic] = 0
        print(f"recording {topic} ({msgtype})", flush=True)

    def _on_message(self, topic: str, msgtype: str, conn: Any, raw: bytes) -> None:
        log_ns = time.time_ns()
        self.writer.write(conn, log_ns, raw)
        self.counts[topic] += 1
        if topic in self.echo:
            msg = to_plain(self.store.deserialize_cdr(raw, msgtype))
            print(json.dumps({"topic": topic, "log_ns": log_ns, "msg": msg}), flush=True)


def record(out: Path, topics: list[str], duration_s: float | None = None, echo: tuple[str, ...] = ()) -> dict[str, int]:
    """Record until interrupted or duration_s; messages per recorded topic. Names are absolute ("a" is "/a")."""
    topics = [t if t.startswith("/") else f"/{t}" for t in topics]
    echo = tuple(t if t.startswith("/") else f"/{t}" for t in echo)
    if not topics:
        raise OwledError("give at least one topic to record")
    if duration_s is not None and not duration_s > 0:
        raise OwledError(f"--duration must be positive, got {duration_s}")
    unknown_echo = set(echo) - set(topics)
    if unknown_echo:
        raise OwledError(f"--echo topics must be recorded too: {', '.join(sorted(unknown_echo))}")
    stop = threading.Event()
    # Our handlers run instead of KeyboardInterrupt, so a signal never lands in the middle of a
    # write; rclpy installs none of its own (they would shut the context down under a running
    # spin_once, which then fails with "the given context is not valid" and a non-zero exit).
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with open_bag_writer(Path(out)) as writer:
            rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
            node = rclpy.create_node("owled_bag_recorder")
            executor = SingleThreadedExecutor()
            executor.add_node(node)
            try:
                recorder = Recorder(node, writer, topics, set(echo))
                end = None if duration_s is None else time.monotonic() + duration_s
                next_discovery = 0.0
                while not stop.is_set() and rclpy.ok() and (end is None or time.monotonic() < end):
                    if recorder.pending and time.monotonic() >= next_discovery:
                        recorder.discover()
                        next_discovery = time.monotonic() + DISCOVERY_PERIOD_S
                    executor.spin_once(timeout_sec=0.05)
            finally:
                executor.shutdown()
                node.destroy_node()
                rclpy.try_shutdown()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return recorder.counts
