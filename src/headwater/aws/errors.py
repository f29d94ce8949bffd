"""AWS errors in words: the code of a botocore error, whether it is throttling, and what it means."""

from __future__ import annotations

from typing import Any

#: Codes AWS answers when a caller goes too fast (retried, never a failed run).
THROTTLING = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestLimitExceeded", "TooManyRequestsException",
    "RequestThrottled", "RequestThrottledException", "SlowDown",
})  # fmt: skip
_DENIED = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation", "UnrecognizedClientException",
                     "InvalidClientTokenId", "ExpiredTokenException", "SignatureDoesNotMatch"})  # fmt: skip


def error_code(exc: BaseException) -> str | None:
    """A botocore ClientError's code (``"ClusterNotFoundException"``); None for anything else."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return None
    code = (response.get("Error") or {}).get("Code")
    return str(code) if code else None


def error_message(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str((response.get("Error") or {}).get("Message") or "")
    return str(exc)


def is_throttling(exc: BaseException) -> bool:
    """Whether AWS refused ``exc``'s call for going too fast."""
    return error_code(exc) in THROTTLING


def is_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` is a network failure (no answer from AWS), not an answer."""
    try:
        from botocore import exceptions as boto
    except ImportError:  # pragma: no cover - the aws extra is what raised it
        return False
    return isinstance(exc, boto.EndpointConnectionError | boto.ConnectionError | boto.HTTPClientError)


def explain(exc: BaseException, action: str) -> str:
    """What went wrong when trying to ``action`` (e.g. "run a task in cluster 'c'"), and the fix."""
    code = error_code(exc)
    if code in _DENIED:
        return (
            f"AWS refused to {action}: {code}: {error_message(exc)}; check the credentials and that their IAM "
            "policy allows it (docs/aws.md lists the permissions)"
        )
    if code in THROTTLING:
        return f"AWS throttled the calls to {action} ({code}) beyond the retries; it is tried again later"
    if code is not None:
        return f"AWS could not {action}: {code}: {error_message(exc)}"
    if is_unreachable(exc):
        return (
            f"can't reach AWS to {action} ({type(exc).__name__}: {exc}); check the network, the region and "
            "AWS_ENDPOINT_URL if one is set"
        )
    return f"could not {action}: {type(exc).__name__}: {exc}"


def describe_failures(answer: dict[str, Any]) -> str:
    """The ``failures`` of an ECS answer (``run_task``, ``describe_*``) in one line."""
    failures = answer.get("failures") or []
    return "; ".join(f"{f.get('arn', '')} {f.get('reason', '')} {f.get('detail', '') or ''}".strip() for f in failures)
