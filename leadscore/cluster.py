"""The Dask cluster a run works on (``[engine] kind = "dask"``): one per pipeline run, opened by the flow and
shared by its steps; a step run alone opens its own.

Workers get exactly ``engine.threads`` threads for LightGBM, duckdb and OpenMP, and OpenMP threads that sleep
when idle (``OMP_WAIT_POLICY=PASSIVE``): spinning threads of two workers on the same cores starve each other
(lightgbm#7399).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from concurrent.futures import CancelledError
from contextlib import contextmanager
from typing import TypeVar

from leadscore.config import EngineConfig
from leadscore.errors import ClusterError, ConfigError

log = logging.getLogger("leadscore")

_open: list = []  # the client of the run in progress, if any

T = TypeVar("T")

# Times a step's cluster work starts again after losing a worker (a third loss fails the run).
LOST_WORKER_RETRIES = 2
# Why distributed cancels the tasks of a lost worker's data ("already forgotten": the scheduler lost every copy),
# or a part that could not be sent (the connection to a dying worker closed).
LOST_REASONS = frozenset({"already forgotten", "connection closed"})
WORKER_MEMORY = ("a worker that runs out of memory is stopped: give the workers more (engine.memory_per_worker, or "
                 "--memory-limit of `dask worker`) or send smaller parts (engine.rows_per_part)")

# Each partition is prepared once per pass of the sharded features (counting, query rows, build), so fewer,
# larger partitions are faster until a worker's memory binds (about 0.5 GB plus 1.5 GB per million leads; README,
# "Sizing"). A cluster ingest checks a partition's rows in one worker too: about 6x its share of the export files.
LEADS_PER_PARTITION = 2_500_000
FILE_BYTES_PER_PARTITION = 1 << 30


def partition_sql(partitions: int) -> str:
    """A lead's partition, in duckdb: the one rule by which ingest and the sharded features split the tables, so
    a lead's rows of every table meet in one partition."""
    return f"(hash(lead_id) % {int(partitions)})::INTEGER"


def partition_count(engine_partitions: int, leads: int, threads: int, file_bytes: int = 0) -> int:
    """How many lead partitions: ``engine.partitions`` if set, else one per 2.5M leads and per GB of export
    files, and at least one per worker thread."""
    if engine_partitions:
        return engine_partitions
    return max(threads, -(-leads // LEADS_PER_PARTITION), -(-file_bytes // FILE_BYTES_PER_PARTITION))


def worker_environment(threads: int) -> dict[str, str]:
    return {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": "PASSIVE", "MKL_NUM_THREADS": str(threads),
            "OPENBLAS_NUM_THREADS": str(threads)}


@contextmanager
def session(engine: EngineConfig) -> Iterator[object | None]:
    """The ``distributed.Client`` to work on, or None for the local engine."""
    if engine.kind == "local":
        yield None
        return
    if _open:
        yield _open[-1]
        return
    import dask
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if engine.address == "local":
            # Critical only: a worker that stops mid-heartbeat when the run closes its cluster logs an error with
            # a traceback, which is no error of the run's (seen once in a fresh-clone test run).
            with dask.config.set({"distributed.worker.daemon": False, "distributed.logging.distributed": "critical"}):
                cluster = LocalCluster(n_workers=engine.workers, threads_per_worker=engine.threads, processes=True,
                                       memory_limit=engine.memory_per_worker.strip(), dashboard_address=":0",
                                       env=worker_environment(engine.threads), silence_logs=logging.CRITICAL)
            client = Client(cluster)
            client.register_plugin(_quiet_plugin())  # on every worker, and on one the nanny starts anew
        else:
            client = Client(engine.address, timeout="20s")
    except OSError as exc:  # no scheduler there (distributed raises OSError subclasses on timeouts)
        if cluster is not None:
            cluster.close()
        raise ConfigError(f"engine.address: no Dask scheduler answered at {engine.address} ({exc}); start one with "
                          "`dask scheduler` (and `dask worker ADDRESS`), or set engine.address = \"local\"") from None
    try:
        workers = client.scheduler_info(n_workers=-1)["workers"]
        log.info("engine: Dask at %s, %d workers, %d threads; dashboard %s", client.scheduler.address, len(workers),
                 total_threads(client), client.dashboard_link)
        _open.append(client)
        yield client
    finally:
        if _open and _open[-1] is client:
            _open.pop()
        client.close()
        if cluster is not None:
            cluster.close()


def _quiet_plugin():
    from distributed.diagnostics.plugin import WorkerPlugin

    class QuietStdout(WorkerPlugin):
        name = "leadscore-quiet-stdout"

        def setup(self, worker):
            _quiet_stdout()

    return QuietStdout()


def _quiet_stdout() -> None:
    """A worker of the run's own LocalCluster writes nothing to the terminal's stdout (LightGBM's socket set-up
    prints there from C++, past any logger); its logs go to stderr as before."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def total_threads(client) -> int:
    return sum(w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()) or 1


def cut(rows, most: int, threads: int = 1) -> list:
    """``rows`` (a frame or an Arrow table) in consecutive parts of even size, at most ``most`` rows each, and
    about as many parts for each of ``threads`` worker threads, so that none waits for the last part alone."""
    n = len(rows)
    if n == 0:
        return []
    count = -(-n // most)  # the fewest parts of at most `most` rows
    count = -(-count // threads) * threads  # rounded up to a multiple of the threads
    step = -(-n // count)
    take = rows.iloc if hasattr(rows, "iloc") else rows
    return [take[start:start + step] for start in range(0, n, step)]


def send_parts(client, parts: list) -> list:
    """``parts`` placed on the workers, straight (not through the scheduler), each once and unhashed: parts that
    look equal to Dask's tokenizer (pyarrow slices of one length) are not merged into one."""
    return client.scatter(parts, hash=False, direct=True)


def gather_all(client, futures: list) -> list:
    """The futures' results, in order, once every task has ended, done or failed: a caller that cleans up after a
    failure does not race a task still writing."""
    from distributed import wait

    wait(futures)
    return client.gather(futures)


def map_parts(client, fn, parts: list, *args, **kwargs) -> list:
    """``fn(part, *args, **kwargs)`` for each part (futures from :func:`send_parts`, or data, sent here) on the
    workers, results in order (:func:`gather_all`)."""
    from distributed import Future

    if not all(isinstance(p, Future) for p in parts):
        parts = send_parts(client, parts)
    return gather_all(client, client.map(fn, parts, *args, pure=False, **kwargs))


def again_if_lost(client, what: str, attempt: Callable[[], T], retries: int = LOST_WORKER_RETRIES) -> T:
    """``attempt()``, and again from its start when a worker was lost under it, at most ``retries`` times (0:
    work that cannot start again, such as a LightGBM network of workers, ends in a one-line error). The parts sent
    to the workers live only in their memory, so a lost worker takes its parts with it and Dask cancels the tasks
    that needed them (or the sending fails); ``attempt`` sends them again to the workers left (a LocalCluster's
    nanny restarts its lost worker). ``attempt`` must be safe to run twice: its files written whole under the
    same names, its rows loaded anew. Work Dask can redo alone (tasks on files) it reschedules without this. Work
    cancelled for another reason (the scheduler gone or restarted) ends the run with a one-line error."""
    from distributed.comm import CommClosedError

    for tries in range(retries + 1):
        try:
            return attempt()
        except (CancelledError, CommClosedError) as exc:
            reasons = _cancelled_for(exc)
            if reasons - LOST_REASONS:
                raise ClusterError(f"engine: the Dask cluster cancelled {what} ({', '.join(sorted(reasons))}); "
                                   "check the scheduler and run the step again") from None
            if tries == retries:
                times = f" {tries + 1} times" if tries else ""
                again = "" if retries else ", which cannot start again on the workers left: run the step again"
                raise ClusterError(f"engine: a Dask worker was lost{times} while {what}{again}; "
                                   f"{WORKER_MEMORY}") from None
            log.warning("engine: a Dask worker was lost while %s, and the parts it held with it; %s again "
                        "(%d of %d)", what, what, tries + 1, retries)
            try:
                client.wait_for_workers(1, timeout=120)
            except Exception as wait:  # the scheduler gone too, or no worker for two minutes
                raise ClusterError(f"engine: after losing a Dask worker while {what}, no worker was left to "
                                   f"start again on ({type(wait).__name__}: {wait}); check the cluster and run "
                                   "the step again") from None
    raise AssertionError("unreachable")


def _cancelled_for(exc: BaseException) -> set[str]:
    if not isinstance(exc, CancelledError):
        return {"connection closed"}
    groups = getattr(exc, "error_groups", None)
    if groups is not None:
        return {g.reason for g in groups}
    return {getattr(exc, "reason", "unknown")}
