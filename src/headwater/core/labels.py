"""The one label rule, used by flows' storage and environments, agents, registration and the wire.

A label is a non-empty string (not only spaces) of at most :data:`MAX_LABEL_LENGTH`
characters; a set of labels is given as a list (or other iterable) of them, never as
one bare string. ``headwater.schemas.common.Labels`` validates the API's labels with
this same function, so a label an agent or a flow accepts is one the server accepts.
"""

from __future__ import annotations

from collections.abc import Iterable

#: The longest label the server stores (its column width).
MAX_LABEL_LENGTH = 200


def check_labels(labels: Iterable[str] | None, owner: str = "", error: type[Exception] = ValueError) -> list[str]:
    """``labels`` as a list of distinct labels, in the order given.

    Args:
        labels: the labels; None means none.
        owner: who has them, for the message (``"agent 'a1'"``, ``"LocalEnvironment"``).
        error: the exception class to raise (a family's own, e.g. ``StorageError``).

    Raises:
        error: ``labels`` is one string or not iterable, or holds something that is not
            a non-empty string of at most 200 characters; the message names the bad ones.
    """
    return check_strings(labels, "labels", owner, error, MAX_LABEL_LENGTH)


def check_strings(
    values: Iterable[str] | None,
    what: str,
    owner: str = "",
    error: type[Exception] = ValueError,
    max_length: int | None = None,
) -> list[str]:
    """``values`` as a list of distinct non-empty strings, in order (labels, secrets' names, networks, ...).

    Raises:
        error: ``values`` is one string or not iterable, or holds something that is not a
            non-empty string (of at most ``max_length`` characters); the message names ``what``,
            ``owner`` and the bad values.
    """
    if values is None:
        return []
    prefix = f"{owner}: " if owner else ""
    if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
        given = f"the string {values!r}" if isinstance(values, str) else repr(values)
        raise error(f"{prefix}{what} must be a list of strings like ['dev'], not {given}")
    listed = list(values)
    bad = [
        v for v in listed if not isinstance(v, str) or not v.strip() or (max_length is not None and len(v) > max_length)
    ]
    if bad:
        limit = f" of at most {max_length} characters" if max_length is not None else ""
        shown = ", ".join(repr(v) if len(repr(v)) <= 60 else repr(v)[:57] + "..." for v in bad)
        raise error(f"{prefix}{what} must be non-empty strings{limit}, not {shown}")
    return list(dict.fromkeys(listed))
