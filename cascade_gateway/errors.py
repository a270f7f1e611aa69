"""Every error a client can see, each knowing its HTTP status and OpenAI error `type`/`code`.

    GatewayError
    ├── InvalidRequest            400 invalid_request_error
    │   ├── BodyTooLarge          413 invalid_request_error / request_too_large
    │   ├── MethodNotAllowed      405 invalid_request_error / method_not_allowed (with Allow)
    │   └── ContextTooLong        400 invalid_request_error / context_length_exceeded
    ├── AuthenticationError       401 authentication_error / invalid_api_key
    ├── BudgetExceeded            402 insufficient_quota / budget_exceeded
    ├── PermissionDenied          403 permission_error
    ├── ModelNotFound             404 invalid_request_error / model_not_found
    ├── NotFound                  404 invalid_request_error / not_found
    ├── RateLimited               429 requests|tokens / rate_limit_exceeded (with Retry-After)
    ├── StorageUnavailable        503 server_error / storage_unavailable (with Retry-After)
    └── UpstreamError             502 upstream_error (the upstream failed or answered garbage)
        ├── UpstreamTimeout       504 timeout
        ├── ProviderError         one failed call: 502, 504 if it timed out, 503 if the gateway
        │                         refused to make it (circuit open, overloaded)
        └── NoUpstreamAnswered    every tier and fallback failed: the calls' worst status

Provider adapters raise only `ProviderError` (the litellm adapter translates litellm's
exceptions where they enter), so no client library's exception type leaks past
`cascade_gateway.providers`.
"""

from __future__ import annotations

import math
from typing import Any


class GatewayError(Exception):
    """Base class: one handler turns any of these into OpenAI's error shape."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None
    # Seconds the client should wait before retrying; sent as a whole-second `Retry-After`.
    retry_after: float | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_body(self) -> dict[str, Any]:
        """The OpenAI error body: `{"error": {"message", "type", "param", "code"}}`."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        if self.retry_after is None:
            return {}
        # Rounded up: a client told to come back early would just be refused again.
        return {"retry-after": str(max(1, math.ceil(self.retry_after)))}


class InvalidRequest(GatewayError):
    status_code = 400
    error_type = "invalid_request_error"


class BodyTooLarge(InvalidRequest):
    status_code = 413
    code = "request_too_large"


class MethodNotAllowed(InvalidRequest):
    status_code = 405
    code = "method_not_allowed"

    def __init__(self, method: str, path: str, allowed: str) -> None:
        super().__init__(f"{method} is not allowed on {path}; use {allowed}.")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"allow": self.allowed}


class ContextTooLong(InvalidRequest):
    code = "context_length_exceeded"


class AuthenticationError(GatewayError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class BudgetExceeded(GatewayError):
    status_code = 402
    error_type = "insufficient_quota"
    code = "budget_exceeded"


class RateLimited(GatewayError):
    """A key's requests- or tokens-per-minute limit; `retry_after` in seconds."""

    status_code = 429
    code = "rate_limit_exceeded"

    def __init__(self, message: str, *, kind: str, retry_after: float) -> None:
        super().__init__(message)
        self.error_type = kind
        self.retry_after = retry_after


class StorageUnavailable(GatewayError):
    """The gateway's database or Redis cannot be used right now (`storage.outage`): the
    request was not served (what it had spent by then is in the ledger), and the client
    should retry shortly."""

    status_code = 503
    code = "storage_unavailable"
    retry_after = 1.0


class PermissionDenied(GatewayError):
    status_code = 403
    error_type = "permission_error"


class ModelNotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "model_not_found"


class NotFound(GatewayError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class UpstreamError(GatewayError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "timeout"


class ProviderError(UpstreamError):
    """An upstream call failed; `status` is what the upstream answered (None: no answer at all,
    `timed_out` telling a deadline from a refused or broken connection)."""

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        status: int | None = None,
        body: Any = None,
        retry_after: float | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.timed_out = timed_out
        # True when the gateway itself declined to call (circuit open, overloaded).
        self.refused_locally = False
        self.status = status
        self.body = body
        self.retry_after = retry_after
        if timed_out:
            self.code = "timeout"
        elif status == 429:
            self.code = "upstream_rate_limited"
        elif status is not None:
            self.code = f"upstream_{status}"

    @property
    def status_code(self) -> int:  # type: ignore[override]
        # The client did nothing wrong when an upstream fails us: a 502, or 504 for a timeout.
        # An upstream's 429 is passed on as a 429 (with its Retry-After), so clients back off.
        if self.refused_locally:
            return 503
        if self.status == 429:
            return 429
        return 504 if self.timed_out or self.status == 408 else 502

    @property
    def retryable(self) -> bool:
        """Worth trying again or escalating past: no answer, rate limited, or a server error."""
        return self.status is None or self.status in (408, 409, 429) or self.status >= 500


class NoUpstreamAnswered(UpstreamError):
    """Every model the request could go to failed; the message says which and how."""

    def __init__(self, failures: list[ProviderError]) -> None:
        listed = "; ".join(f"{f.message}" for f in failures)
        super().__init__(f"No upstream could answer: {listed}")
        self.failures = failures
        last = failures[-1]
        self.code = last.code
        statuses = {f.status_code for f in failures}
        # One kind of failure everywhere keeps its own status; a mix is a plain 502.
        self._status = statuses.pop() if len(statuses) == 1 else 502
        retry_afters = [f.retry_after for f in failures if f.retry_after is not None]
        self.retry_after = min(retry_afters) if retry_afters else None

    @property
    def status_code(self) -> int:  # type: ignore[override]
        return self._status
