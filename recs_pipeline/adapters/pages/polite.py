"""Asking a CMS politely: concurrency and request-rate limits, timeouts, retries, a circuit.

Every page fetcher goes through :class:`PoliteClient`:

* at most ``max_concurrency`` requests in flight and ``requests_per_second`` started per second
  (``asyncio.Semaphore`` and ``aiolimiter``'s leaky bucket);
* a timeout per request; timeouts, connection errors, 429 and 5xx are retried with exponential
  back-off and jitter (``tenacity``), waiting what a ``Retry-After`` header asks instead (a wait
  longer than ``max_retry_after_seconds`` gives the page up for this run);
* a circuit breaker: after ``circuit_failures`` failed requests in a row (timeouts, connection
  errors, 429, 5xx), the CMS is left alone for ``circuit_cooldown_seconds``: pages not yet
  asked are skipped (and asked again on a later run), then one trial request decides whether to
  close it again. The rest of the run goes on.
"""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import httpx
from aiolimiter import AsyncLimiter
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential_jitter,
)

from recs_pipeline.core.site import PagesConfig

T = TypeVar("T")


class RetryableStatus(Exception):
    """A 429 or 5xx answer: worth asking again, after ``retry_after`` seconds if the CMS said."""

    def __init__(self, status: int, retry_after: float | None) -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.retry_after = retry_after


class FetchFailed(Exception):
    """The page could not be fetched in this run (after retries, or the CMS asked for a pause)."""


class CircuitOpen(Exception):
    """The circuit is open: the CMS is not asked at all."""


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number of seconds or an HTTP date."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - (time.time() if now is None else now))


class CircuitBreaker:
    """Closed -> open after ``threshold`` failures in a row -> half-open after the cooldown."""

    def __init__(
        self, threshold: int, cooldown: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.clock = clock
        self.failures = 0
        self.opened_at: float | None = None
        self.times_opened = 0
        self._trial = False

    def allow(self) -> bool:
        if self.opened_at is None:
            return True
        if self.clock() - self.opened_at < self.cooldown or self._trial:
            return False
        self._trial = True  # half-open: exactly one request decides
        return True

    def success(self) -> None:
        self.failures = 0
        self.opened_at = None
        self._trial = False

    def failure(self) -> None:
        self.failures += 1
        if self._trial or (self.opened_at is None and self.failures >= self.threshold):
            if self.opened_at is None or self._trial:
                self.times_opened += 1
            self.opened_at = self.clock()
            self._trial = False


@dataclass
class FetchStats:
    requests: int = 0
    retries: int = 0
    failed: int = 0
    skipped_circuit_open: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class PoliteClient:
    """An ``httpx.AsyncClient`` that keeps the site's politeness rules."""

    def __init__(self, config: PagesConfig, transport: httpx.AsyncBaseTransport | None = None):
        self.config = config
        self.transport = transport
        self.breaker = CircuitBreaker(config.circuit_failures, config.circuit_cooldown_seconds)
        self.stats = FetchStats()
        self._client: httpx.AsyncClient | None = None
        self._semaphore: asyncio.Semaphore | None = None
        self._limiter: AsyncLimiter | None = None

    async def __aenter__(self) -> PoliteClient:
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(self.config.timeout_seconds),
            headers={"User-Agent": self.config.user_agent},
            follow_redirects=True,
            transport=self.transport,
            limits=httpx.Limits(max_connections=self.config.max_concurrency),
        )
        self._semaphore = asyncio.Semaphore(self.config.max_concurrency)
        rate = self.config.requests_per_second
        # A bucket of one request, refilled every 1/rate seconds: no bursts.
        self._limiter = AsyncLimiter(1, 1.0 / rate)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._client is not None
        await self._client.aclose()

    def _wait(self, state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        if isinstance(error, RetryableStatus) and error.retry_after is not None:
            return error.retry_after
        backoff = wait_exponential_jitter(
            initial=self.config.backoff_seconds, max=self.config.max_backoff_seconds
        )
        return float(backoff(state))

    async def _attempt(self, url: str, params: dict[str, str] | None) -> httpx.Response:
        assert self._client and self._semaphore and self._limiter
        async with self._semaphore:
            # Asked here, not before queueing: pages waiting for a slot see a circuit that
            # opened while they waited.
            if not self.breaker.allow():
                raise CircuitOpen(url)
            async with self._limiter:
                self.stats.requests += 1
                try:
                    response = await self._client.get(url, params=params)
                except httpx.TransportError:
                    self.breaker.failure()
                    raise
        self.stats.statuses[response.status_code] = (
            self.stats.statuses.get(response.status_code, 0) + 1
        )
        if response.status_code == 429 or response.status_code >= 500:
            self.breaker.failure()
            wait = retry_after_seconds(response.headers.get("Retry-After"))
            if wait is not None and wait > self.config.max_retry_after_seconds:
                raise FetchFailed(f"HTTP {response.status_code}, Retry-After {wait:.0f} s")
            raise RetryableStatus(response.status_code, wait)
        return response

    async def get(self, url: str, params: dict[str, str] | None = None) -> httpx.Response:
        """The CMS's answer (any status below 500 but 429), or FetchFailed / CircuitOpen."""
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception_type((httpx.TransportError, RetryableStatus)),
            reraise=True,
            before_sleep=lambda _: self._count_retry(),
        )
        try:
            response: httpx.Response = await retrying(self._attempt, url, params)
        except CircuitOpen as error:
            if retrying.statistics.get("attempt_number", 1) > 1:  # it had been tried: failed
                self.stats.failed += 1
                raise FetchFailed(f"{url}: circuit opened while retrying") from error
            self.stats.skipped_circuit_open += 1
            raise
        except (httpx.TransportError, RetryableStatus, FetchFailed, httpx.HTTPError) as error:
            self.stats.failed += 1
            raise FetchFailed(f"{url}: {error!r}") from error
        self.breaker.success()
        return response

    def _count_retry(self) -> None:
        self.stats.retries += 1


async def gather_limited(items: Sequence[str], work: Callable[[str], Awaitable[T]]) -> list[T]:
    """``work`` for every item concurrently (the client's semaphore bounds what runs)."""
    return list(await asyncio.gather(*(work(item) for item in items)))
