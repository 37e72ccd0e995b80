"""Redis replies read as text, typed once here instead of a `.decode()` and a cast at each call.

vq's clients keep redis-py's default replies (bytes), but redis-py annotates a reply as
`bytes | str` (a client may decode) and a sorted-set range as members or (member, score)
pairs (`withscores` is a run-time flag). These functions accept what the annotations allow
and return `str`, so a caller's types say what it gets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from redis.typing import ZSetRangeResponse


def text(value: bytes | str) -> str:
    """One reply (a key, member, field or value) as text."""
    return value.decode() if isinstance(value, bytes) else value


def optional_text(value: bytes | str | None) -> str | None:
    """A reply that may be missing (GET, HGET of an absent key or field) as text or None."""
    return None if value is None else text(value)


def texts(values: Iterable[bytes | str]) -> list[str]:
    """A set's or list's members (SMEMBERS, HKEYS, LRANGE, SCAN) as text, in reply order."""
    return [text(v) for v in values]


def text_hash(reply: Mapping[bytes | str, bytes | str]) -> dict[str, str]:
    """HGETALL's fields and values as text."""
    return {text(k): text(v) for k, v in reply.items()}


def _member(value: object) -> str:
    if isinstance(value, bytes | str):
        return text(value)
    raise TypeError(f"a sorted-set member is bytes or str, not {type(value).__name__}")


def members(reply: ZSetRangeResponse) -> list[str]:
    """A sorted-set range asked for without scores (ZRANGE, ZREVRANGE, ZRANGEBYSCORE) as text."""
    return [_member(m) for m in reply]


def scored(reply: ZSetRangeResponse) -> list[tuple[str, float]]:
    """A sorted-set range asked for `withscores=True`: (member, score) pairs, in reply order.
    Pairs come as tuples (RESP2) or lists (RESP3); the score is what `score_cast_func` made."""
    pairs = []
    for item in reply:
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise TypeError("a sorted-set range without scores: ask for it withscores=True")
        member, score = item
        pairs.append((_member(member), score))
    return pairs
