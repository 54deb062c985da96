"""Injectable faults for the Supabase stub: what a gateway, an overloaded PostgREST or a flaky
network does to a request. A fault matches by method and path prefix, applies to the next
``times`` matching requests (or until cleared), and is counted when it fires."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Fault:
    method: str | None = None
    path_prefix: str = "/"
    times: int | None = None
    after: int = 0  # let this many matching requests through first
    # What happens (first that applies): drop the connection after reading this many bytes of
    # the request body (the rest never arrives, as when a link dies mid-upload), drop it before
    # answering, answer with ``status`` (and ``retry_after``), or answer late.
    drop_after_body_bytes: int | None = None
    drop: bool = False
    status: int | None = None
    retry_after: str | None = None
    body: bytes = b""
    delay_s: float = 0.0
    fired: int = 0
    fired_at: list[float] = field(default_factory=list)

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method != method:
            return False
        return path.startswith(self.path_prefix) and (self.times is None or self.times > 0)


class Faults:
    def __init__(self) -> None:
        self.active: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self.active.append(fault)
        return fault

    def clear(self) -> None:
        self.active.clear()

    def take(self, method: str, path: str) -> Fault | None:
        for fault in self.active:
            if fault.matches(method, path):
                if fault.after > 0:
                    fault.after -= 1
                    continue
                if fault.times is not None:
                    fault.times -= 1
                fault.fired += 1
                fault.fired_at.append(time.monotonic())
                return fault
        return None

    # -- the usual shapes ----------------------------------------------------------------------

    def unavailable(self, *, times: int | None = None, path_prefix: str = "/") -> Fault:
        """503 as Supabase's gateway answers while the project is down or restarting."""
        return self.add(
            Fault(
                path_prefix=path_prefix,
                times=times,
                status=503,
                body=b'{"message":"An invalid response was received from the upstream server"}',
            )
        )

    def throttled(self, *, retry_after_s: int, times: int = 1, path_prefix: str = "/") -> Fault:
        """429 with Retry-After, as Kong's rate-limiting plugin answers."""
        return self.add(
            Fault(
                path_prefix=path_prefix,
                times=times,
                status=429,
                retry_after=str(retry_after_s),
                body=b'{"message":"API rate limit exceeded"}',
            )
        )
