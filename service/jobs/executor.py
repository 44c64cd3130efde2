"""The embedded executor: a local pool of warm worker processes with hard time limits."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import Future

from service.jobs.process_pool import WorkerPool
from service.jobs.retry import RetriedFuture
from service.jobs.spec import TaskSpec
from service.receipts.keys import load_signer, signing_key_pem
from service.settings import Settings
from service.worker import init_worker, run_task, run_task_encoded


class EmbeddedExecutor:
    """Runs :func:`service.worker.run_task` in ``settings.workers`` spawned processes.

    A task past its time limit has its process killed (the pool replaces it) and its future
    raises ``TimeoutError``; cancelling a running future stops its process the same way.
    A task whose process died is run again (:class:`RetriedFuture`).
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: WorkerPool | None = None

    def start(self) -> None:
        signing_key = signing_key_pem(self.settings)  # the workers sign the receipts
        load_signer(self.settings, signing_key)  # publishes its public key
        self._pool = WorkerPool(
            self.settings.workers,
            multiprocessing.get_context("spawn"),
            initializer=init_worker,
            initargs=(
                str(self.settings.models_dir),
                list(self.settings.extra_trusted_types),
                1,
                signing_key,
                self.settings.remote_policy,
            ),
        )

    def submit(self, spec: TaskSpec, timeout: float | None = None, encoded: bool = False) -> Future:
        """Run ``spec``; ``encoded``: its rows come back as JSON (:func:`run_task_encoded`)."""
        pool = self._pool
        if pool is None:
            raise RuntimeError("executor not started")
        limit = timeout or self.settings.job_time_limit
        function = run_task_encoded if encoded else run_task
        return RetriedFuture(lambda: pool.schedule(function, args=(spec,), timeout=limit))

    @property
    def running(self) -> bool:
        return self._pool is not None and self._pool.active

    def stop(self) -> None:
        if self._pool is not None:
            self._pool.stop(timeout=10)
            self._pool = None
