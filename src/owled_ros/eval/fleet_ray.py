"""The fleet on Ray: one actor per worker loads the model once and scores bag after bag.

Ray, not a scheduler of our own: it places actors on the CPUs it knows (this machine's, or a
cluster's), restarts an actor whose process died and retries the bag it was on, and scales
from one machine to many with the same code (docs/fleet.md).

With no address the embedded default starts a Ray of its own on this machine and stops it at
the end: Ray's single-machine mode, so every Ray server listens on 127.0.0.1 only; no
dashboard; usage statistics off; the object store capped at OBJECT_STORE_BYTES (only bag
paths and reports travel through it); the CPUs this process may run on.
"""
from __future__ import annotations

import os
import socket
import tempfile
import time
from collections import deque
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator, Sequence

from owled_ros.errors import OwledError
from owled_ros.eval.bag_eval import EvalConfig, run_offline, run_online, score
from owled_ros.eval.fleet import FleetConfig

OBJECT_STORE_BYTES = 128 * 2**20
"""Reports of a few hundred KB at most go through it; Ray's floor is 75 MB."""
WORKER_RESTARTS = 1
"""A worker whose process dies is restarted and its bag retried this many times before the bag counts as failed."""
POLL_S = 0.5
ADDRESS_TIMEOUT_S = 5.0
MAX_DOMAIN_ID = 101
"""ROS 2's portable domain range is 0-101 (docs.ros.org, "The ROS_DOMAIN_ID")."""


def _import_ray(local: bool):
    """ray, imported with usage statistics off and, for the embedded Ray, single-machine mode
    (Ray reads both from the environment when it is first imported)."""
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # node IP 127.0.0.1: no server on another interface
    import ray

    return ray


def check_address(address: str) -> None:
    """Refuse at once an address that is malformed or where nothing listens (Ray would retry it for minutes)."""
    if address == "auto":
        return  # Ray finds the running local cluster or says there is none
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise OwledError(f"--address {address}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host, int(port)), timeout=ADDRESS_TIMEOUT_S).close()
    except OSError as err:
        raise OwledError(f"--address {address}: nothing answers at {host}:{port} ({err.strerror or err})") from None


@contextmanager
def ray_cluster(address: str | None) -> Iterator[tuple[float, str]]:
    """A connected Ray for the block: (CPUs it offers, where it runs); shut down afterwards."""
    if address is not None:
        check_address(address)
    ray = _import_ray(address is None)
    if ray.is_initialized():
        raise OwledError("Ray is already initialised in this process")
    options = dict(include_dashboard=False, log_to_driver=False, logging_level="WARNING")
    try:
        if address is None:
            cpus = len(os.sched_getaffinity(0))
            ray.init(address="local", num_cpus=cpus, object_store_memory=OBJECT_STORE_BYTES, **options)
            where = f"a local Ray ({cpus} CPUs, 127.0.0.1)"
        else:
            ray.init(address=address, **({} if address.startswith("ray://") else options))
            where = f"the Ray cluster at {address}"
    except (ConnectionError, ValueError, RuntimeError, TimeoutError) as err:
        ray.shutdown()
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise OwledError(f"--address {address}: cannot connect to Ray ({first})" if address else f"cannot start a local Ray ({first})") from None
    try:
        yield float(ray.cluster_resources().get("CPU", 0.0)), where
    finally:
        ray.shutdown()


def fleet_domains(workers: int) -> list[int]:
    """The ROS domain of each online worker: the ones after this process's ROS_DOMAIN_ID, so the
    workers' nodes hear neither each other nor a stack running on the user's own domain."""
    base = int(os.environ.get("ROS_DOMAIN_ID", "0") or 0)
    domains = [base + 1 + i for i in range(workers)]
    if domains[-1] > MAX_DOMAIN_ID:
        raise OwledError(f"--online with {workers} workers needs ROS domains {domains[0]}-{domains[-1]}; the last usable one is {MAX_DOMAIN_ID} (lower ROS_DOMAIN_ID or --workers)")
    return domains


class BagScorer:
    """A fleet worker that scores bags one at a time, as `owled bag eval` does: offline, the model
    loaded once in this process; online (domain set), a real node process per bag on that ROS domain."""

    def __init__(self, config: EvalConfig, threads: int, domain: int | None = None) -> None:
        import torch

        from owled_ros.runtime.pipeline import PipelineConfig, load_pipeline

        torch.set_num_threads(threads)
        self.config = config
        self.frames = 0
        self.pipeline = None if domain is not None else load_pipeline(config.model, PipelineConfig(config.max_new_tokens))
        if domain is not None:
            os.environ["ROS_DOMAIN_ID"] = str(domain)  # inherited by this worker's node, recorder and player
            os.environ["OMP_NUM_THREADS"] = str(threads)  # the node's torch threads: this worker's CPU share

    def ready(self) -> int:
        return os.getpid()

    def frames_done(self) -> int:
        """Frames this worker has run so far (the driver's progress bar asks while a bag runs)."""
        return self.frames

    def score(self, bag: str, camera_topic: str | None, state_topic: str | None) -> dict:
        from owled_ros.data.bag_read import open_drive_bag

        def count(_output) -> None:
            self.frames += 1

        drive = open_drive_bag(Path(bag), camera_topic, state_topic)
        if self.pipeline is None:
            with tempfile.TemporaryDirectory(prefix="owled-fleet-") as work:  # the node's logs and the recorded outputs
                return score(drive, run_online(drive, self.config, Path(work), count), "online", self.config)
        return score(drive, run_offline(drive, self.config, count, self.pipeline), "offline", self.config)


def _error_text(ray, err: Exception) -> str:
    """One line naming what went wrong with a bag: the bag's own OwledError, another exception, or a lost worker."""
    if isinstance(err, ray.exceptions.RayTaskError):
        cause = err.cause
        return str(cause) if isinstance(cause, OwledError) else f"{type(cause).__name__}: {cause}"
    if isinstance(err, ray.exceptions.RayActorError):
        return f"the worker died {WORKER_RESTARTS + 1} times on this bag ({type(err).__name__})"
    return f"{type(err).__name__}: {err}"


OnResult = Callable[[Path, "dict | None", "str | None"], None]


def score_bags(bags: Sequence[Path], config: FleetConfig, cpus: float, on_result: OnResult, progress: bool = True) -> dict:
    """Score `bags` on min(workers, bags) actors; on_result(bag, report, None) or (bag, None, error) as each one ends.
    Returns the seconds the workers took to load the model (load_s) and then to score every bag (score_s).

    Each actor asks for cpus / workers CPUs and runs torch on that many threads (at least one).
    A bag's error never stops the others; an actor that died for good is replaced.
    """
    import ray
    from tqdm import tqdm

    workers = min(config.workers, len(bags))
    share = cpus / config.workers
    actor_class = ray.remote(num_cpus=share, max_restarts=WORKER_RESTARTS, max_task_retries=WORKER_RESTARTS, max_concurrency=2)(BagScorer)

    domains = fleet_domains(workers) if config.online else [None] * workers

    def start(i: int) -> object:
        return actor_class.remote(config.eval, max(1, int(share)), domains[i])

    started = time.monotonic()
    actors = [start(i) for i in range(workers)]
    try:
        ray.get([a.ready.remote() for a in actors])
        loaded = time.monotonic()
    except ray.exceptions.RayError as err:
        lines = [line.strip() for line in str(err).splitlines() if line.strip()]
        raise OwledError(f"a fleet worker could not load model {config.eval.model}: {lines[-1] if lines else type(err).__name__}") from None
    queue, running = deque(bags), {}
    seen = [0] * workers

    def submit(i: int) -> None:
        if queue:
            bag = queue.popleft()
            running[actors[i].score.remote(str(bag), config.camera_topic, config.state_topic)] = (i, bag)

    for i in range(workers):
        submit(i)
    bag_bar = tqdm(total=len(bags), unit="bag", desc="bags", disable=not progress)
    frame_bar = tqdm(unit="frame", desc="frames", disable=not progress)
    try:
        while running:
            done, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in done:
                i, bag = running.pop(ref)
                try:
                    on_result(bag, ray.get(ref), None)
                except ray.exceptions.RayError as err:
                    if isinstance(err, ray.exceptions.RayActorError):
                        actors[i], seen[i] = start(i), 0
                    on_result(bag, None, _error_text(ray, err))
                bag_bar.update()
                submit(i)
            if progress:
                frame_bar.update(_new_frames(ray, actors, seen))
    finally:
        frame_bar.close()
        bag_bar.close()
        for actor in actors:
            ray.kill(actor)
    return {"load_s": loaded - started, "score_s": time.monotonic() - loaded}


def _new_frames(ray, actors: list, seen: list[int]) -> int:
    """Frames run since the last call, summed over the actors (a restarted actor counts from 0 again)."""
    new = 0
    for i, actor in enumerate(actors):
        try:
            now = ray.get(actor.frames_done.remote(), timeout=POLL_S)
        except ray.exceptions.RayError:
            continue
        new += max(0, now - seen[i])
        seen[i] = now
    return new


def run_fleet(bags: Sequence[Path], config: FleetConfig, on_result: OnResult, progress: bool = True) -> dict:
    """Start or join Ray, score the bags, stop; what the fleet report says about the run (no Ray when there is nothing to score)."""
    if config.workers < 1:
        raise OwledError(f"--workers must be at least 1, got {config.workers}")
    started = time.monotonic()
    run = {"workers": config.workers, "where": "nowhere (nothing left to score)", "cpus": None, "load_s": 0.0, "score_s": 0.0}
    if bags:
        with ray_cluster(config.address) as (cpus, where):
            if cpus <= 0:
                raise OwledError(f"{where} offers no CPU")
            run |= {"where": where, "cpus": cpus} | score_bags(bags, config, cpus, on_result, progress)
    return run | {"wall_s": time.monotonic() - started}
