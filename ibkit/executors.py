"""Where a sweep's training groups run: this process, local worker processes, or a Dask cluster.

An executor takes ``fn(context, group)`` (module-level, picklable), the shared ``context`` (sent to each worker
once) and the groups, and yields ``(group, result)`` as groups finish, in any order; ``result`` is what ``fn``
returned, or the exception that stopped it (a worker that died, say). ``running()`` counts the runs in flight.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context

from ibkit.checks import check_choice, check_number
from ibkit.progress import stderr_handler, stderr_level

EXECUTORS = ("local", "dask")


def share_of_cores(jobs: int, threads: int | None = None) -> int:
    """torch's intra-op threads for each of ``jobs`` processes: ``threads`` where given, else the machine's cores
    divided among them (more would oversubscribe the cores: on a busy 2-core machine a fit ran 30 times slower)."""
    if threads is not None:
        check_number("threads", threads, low=1, integer=True)
        return threads
    return max(1, (os.cpu_count() or 1) // jobs)


class InProcess:
    """The groups one after another in this process, on ``threads`` torch threads (default: every core)."""

    workers = 1  # groups that run at once

    def __init__(self, threads: int | None = None):
        self._current = 0
        self.threads = share_of_cores(1, threads)

    def run(self, fn: Callable, context, groups: Sequence[list]) -> Iterator[tuple[list, object]]:
        import torch

        torch.set_num_threads(self.threads)
        for group in groups:
            self._current = len(group)
            try:
                result = fn(context, group)
            except Exception as e:  # a fault of the group's code: its runs fail, the sweep goes on
                result = e
            self._current = 0
            yield group, result

    def running(self) -> int:
        return self._current


_CONTEXT = None  # a worker process's copy of the sweep context, set once by _start_worker


def _start_worker(context, threads: int, log_level: int | None = None) -> None:
    import torch

    global _CONTEXT
    _CONTEXT = context
    torch.set_num_threads(threads)
    if log_level is not None:  # the parent (the command line) logs ibkit's progress on stderr: so does the worker
        logger = logging.getLogger("ibkit")
        logger.addHandler(stderr_handler())
        logger.setLevel(log_level)


def _in_worker(fn: Callable, group: list):
    return fn(_CONTEXT, group)


def _identity(value):
    return value


def _threaded(fn: Callable, context, group: list, *, threads: int | None):
    """``fn(context, group)`` on ``threads`` torch threads (None: as the process is set)."""
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
    return fn(context, group)


class Processes:
    """The groups across ``jobs`` worker processes (spawned, so no thread pool is inherited mid-use), the
    machine's cores divided among them for torch's threads (or ``threads`` each)."""

    def __init__(self, jobs: int, threads: int | None = None):
        check_number("jobs", jobs, low=1, integer=True)
        self.jobs = self.workers = jobs
        self.threads = share_of_cores(jobs, threads)
        self._pending: dict = {}

    def run(self, fn: Callable, context, groups: Sequence[list]) -> Iterator[tuple[list, object]]:
        with ProcessPoolExecutor(self.jobs, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(context, self.threads, stderr_level())) as pool:
            self._pending = {pool.submit(_in_worker, fn, group): group for group in groups}
            while self._pending:
                finished, _ = wait(self._pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = self._pending.pop(future)
                    error = future.exception()
                    yield group, error if error is not None else future.result()

    def running(self) -> int:
        return sum(len(group) for future, group in self._pending.items() if future.running())


def _tcp_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of a tcp:// scheduler ``address`` (a bare host:port is tcp), None for Dask's other protocols;
    a ValueError names an address Dask cannot parse."""
    from distributed.comm import parse_address
    from distributed.comm.addressing import parse_host_port
    from distributed.comm.registry import get_backend

    try:
        protocol, location = parse_address(address)
        get_backend(protocol)  # a scheme Dask knows
        return parse_host_port(location) if protocol == "tcp" else None
    except ValueError as e:
        raise ValueError(f"address={address!r} is not a Dask scheduler address, e.g. tcp://host:8786 ({e})") from None


def _probe(host_port: tuple[str, int], timeout: float) -> None:
    """Connect once and wait for the greeting: a refused or unreachable address fails at once
    (ConnectionRefusedError, another OSError) rather than after the Dask client's retries, and a server that
    accepts but never speaks times out (TimeoutError), where the client would wait for its handshake forever. A Dask
    scheduler speaks first: its handshake."""
    import socket

    with socket.create_connection(host_port, timeout=timeout) as probe:
        if not probe.recv(1):
            raise ConnectionError("it closed the connection without a word")


class Dask:
    """The groups as tasks on a Dask distributed cluster: the scheduler at ``address`` (e.g. one that
    dask-jobqueue or dask-kubernetes started), or a ``LocalCluster`` of ``jobs`` single-threaded worker processes
    started for the run. A task whose worker dies is retried elsewhere (twice). Each task runs on ``threads``
    torch threads: given, or for the local cluster the cores divided among its workers (a remote cluster's
    workers keep their own setting unless ``threads`` is given)."""

    def __init__(self, address: str | None = None, jobs: int = 1, timeout: float = 5.0, threads: int | None = None):
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise ValueError("executor='dask' needs Dask distributed: pip install -e \".[dask]\"") from None
        check_number("jobs", jobs, low=1, integer=True)
        self._cluster = None
        self.threads = share_of_cores(jobs, threads) if threads is not None or not address else None
        if address:
            host_port = _tcp_host_port(address)
            try:
                if host_port is not None:
                    _probe(host_port, timeout)
                self.client = Client(address, timeout=timeout)
            except Exception as e:  # whatever answers there (or nothing), the user gets one line
                why = ("the connection was refused" if isinstance(e, ConnectionRefusedError)
                       else f"none within {timeout:g} s" if isinstance(e, TimeoutError)
                       else f"{type(e).__name__}: {e}" if isinstance(e, OSError)
                       else f"what answers there does not speak Dask's protocol: {type(e).__name__}")
                raise ValueError(f"address={address!r}: no Dask scheduler answered ({why})") from None
        else:
            self._cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True, host="127.0.0.1",
                                         dashboard_address=None)  # loopback only: nothing listens publicly
            self.client = Client(self._cluster)
        self.workers = max(1, len(self.client.scheduler_info()["workers"]))  # groups that run at once
        self._pending: dict = {}

    def run(self, fn: Callable, context, groups: Sequence[list]) -> Iterator[tuple[list, object]]:
        from distributed import as_completed

        # a task holding the context (not scattered data): should its worker die, the scheduler can recompute it
        shared = self.client.submit(_identity, context, pure=False)
        self._pending = {self.client.submit(_threaded, fn, shared, group, threads=self.threads, retries=2,
                                            pure=False): group
                         for group in groups}
        try:
            for future in as_completed(list(self._pending)):
                group = self._pending.pop(future)
                error = future.exception() if future.status == "error" else None
                yield group, error if error is not None else future.result()
        finally:
            self.close()

    def running(self) -> int:
        workers = len(self.client.scheduler_info()["workers"]) if self._pending else 0
        return sum(len(group) for group in list(self._pending.values())[:workers])

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def make_executor(kind: str = "local", jobs: int = 1, address: str | None = None, threads: int | None = None):
    """The executor the command line names: "local" (this process, or ``jobs`` worker processes) or "dask"
    (the scheduler at ``address``, or a local cluster of ``jobs`` workers); ``threads``: torch threads per
    process (default: the cores divided among the processes)."""
    check_executor(kind, jobs, address, threads)
    if kind == "local":
        return InProcess(threads) if jobs == 1 else Processes(jobs, threads)
    return Dask(address, jobs, threads=threads)


def check_executor(kind: str = "local", jobs: int = 1, address: str | None = None,
                   threads: int | None = None) -> None:
    """Refuse executor options that cannot work (a ValueError naming them), before anything is started or made."""
    check_choice("executor", kind, EXECUTORS)
    check_number("jobs", jobs, low=1, integer=True)
    if threads is not None:
        check_number("threads", threads, low=1, integer=True)
    if kind == "local" and address:
        raise ValueError(f"address={address!r} needs executor='dask'; the local executor has no scheduler")


__all__ = ["EXECUTORS", "InProcess", "Processes", "Dask", "make_executor", "check_executor"]
