"""Exception tree for roundtable.

Every error a user can cause derives from :class:`RoundtableError` and carries a message
that names the file, the field and the fix, so the CLI can print it on one line and exit
non-zero without a traceback::

    RoundtableError
    ├── ConfigError                 settings, endpoints, missing API keys
    │   └── MissingKeyError         an endpoint's API key variable is not set
    ├── ProtocolError               a protocol file is unreadable or invalid
    ├── JudgeFileError              a judge or codebook file is unreadable or invalid
    ├── ImportDataError             an input file (War Room JSON, CSV) is malformed
    ├── ExportError                 an export cannot be written as asked
    ├── StoreError                  database problems (schema mismatch, conflicting series)
    │   └── SeriesConflictError     a series name is reused with a different protocol
    ├── BudgetExceeded              --max-cost reached; the series stops cleanly
    └── ProviderError               a provider call failed (carries retry classification)
        ├── RateLimitError          429 / quota; retryable, may carry retry_after
        ├── ServerError             5xx / overloaded; retryable
        ├── ProviderTimeout         the call took longer than its timeout; retryable
        ├── MalformedResponse       the body could not be understood; retryable
        ├── AuthError               401/403; not retryable
        ├── ModelNotFound           unknown or retired model (404); not retryable
        ├── BadRequest              400 / context too long / refused input; not retryable
        └── InjectedCrash           a crash planned by the protocol; never retried
"""

from __future__ import annotations


class RoundtableError(Exception):
    """Base class of every error roundtable raises on purpose."""


class ConfigError(RoundtableError):
    """Settings or endpoint configuration is missing or invalid."""


class MissingKeyError(ConfigError):
    """An endpoint needs an API key that is not set in the environment."""

    def __init__(self, endpoint: str, variable: str) -> None:
        super().__init__(
            f"endpoint '{endpoint}' needs an API key: set the environment variable {variable} "
            f"(keys are read from the environment only and never stored)"
        )
        self.endpoint = endpoint
        self.variable = variable


class ProtocolError(RoundtableError):
    """A protocol file cannot be read or does not validate."""


class JudgeFileError(RoundtableError):
    """A judge definition or codebook file cannot be read or does not validate."""


class ImportDataError(RoundtableError):
    """An input data file is malformed."""


class ExportError(RoundtableError):
    """An export cannot be written as asked (output path, options, missing pyarrow)."""


class StoreError(RoundtableError):
    """The database cannot be used as asked."""


class SeriesConflictError(StoreError):
    """A series already exists with a different protocol."""


class BudgetExceeded(RoundtableError):
    """The spending cap (--max-cost) was reached."""


class ProviderError(RoundtableError):
    """A provider call failed.

    ``retryable`` tells the client wrapper whether another attempt may succeed;
    ``retry_after`` (seconds) is the server's own hint when it gave one.
    """

    retryable: bool = False
    kind: str = "error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
        raw: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after
        self.raw = raw
        #: every attempt the client made before giving up (set by the client wrapper)
        self.records: tuple[object, ...] = ()


class RateLimitError(ProviderError):
    """HTTP 429 or a quota error."""

    retryable = True
    kind = "rate_limit"


class ServerError(ProviderError):
    """HTTP 5xx or an overloaded server."""

    retryable = True
    kind = "server"


class ProviderTimeout(ProviderError):
    """The call exceeded its timeout."""

    retryable = True
    kind = "timeout"


class MalformedResponse(ProviderError):
    """The response body could not be parsed into a completion."""

    retryable = True
    kind = "malformed"


class AuthError(ProviderError):
    """The credentials were refused."""

    kind = "auth"


class ModelNotFound(ProviderError):
    """The model does not exist or was retired."""

    kind = "model_not_found"


class BadRequest(ProviderError):
    """The request was refused as invalid (including context-length errors)."""

    kind = "bad_request"


class InjectedCrash(ProviderError):
    """A crash planned by the protocol's fault schedule."""

    kind = "injected_crash"
