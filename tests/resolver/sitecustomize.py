"""A test's own "hosts file" for the vq processes it starts (on their PYTHONPATH): names in
$VQ_TEST_HOSTS (JSON: name -> [address, ...]) resolve to the n-th address on their n-th
lookup in a process (the last one after that), as a DNS server that rebinds would answer.
Every other name goes to the system resolver."""

import json
import os
import socket

_TABLE = json.loads(os.environ.get("VQ_TEST_HOSTS") or "{}")
_system = socket.getaddrinfo
_lookups: dict[str, int] = {}


def _getaddrinfo(host, port, *args, **kwargs):
    flags = kwargs.get("flags", args[3] if len(args) > 3 else 0)
    answers = _TABLE.get(host.decode() if isinstance(host, bytes) else host)
    if answers and not flags & socket.AI_NUMERICHOST:  # a name is never an address as written
        n = _lookups.get(host, 0)
        _lookups[host] = n + 1
        host = answers[min(n, len(answers) - 1)]
    return _system(host, port, *args, **kwargs)


if _TABLE:
    socket.getaddrinfo = _getaddrinfo
