"""click's resolution of a command line, replayed on the cached command tree: which command
the words name, which parameter the cursor is at, and the (value, help) items click's
ShellComplete.get_completions would return. Where only typer can answer exactly, `Fallback`
sends the TAB down the slow path.
"""

from __future__ import annotations

import os

from vq.cli.complete_values import source_values


class Fallback(Exception):
    """Something only typer itself can answer exactly: take the slow path."""


class _Usage(Exception):
    """click's UsageError while parsing: completion stops parsing there, as click does."""


class _Ctx:
    """What click's Context holds that completion looks at."""

    def __init__(self, node: dict, args: list[str]):
        self.node = node
        self.opts: dict = {}
        self.protected: list[str] = []
        self.args: list[str] = []
        self._parse(args)

    def _parse(self, args: list[str]) -> None:
        node = self.node
        longs, shorts = {}, {}
        for param in node["params"]:
            if param["kind"] != "option":
                continue
            for opts, const in ((param["opts"], True), (param["secondary"], False)):
                for opt in opts:
                    prefix, stem = _split_opt(opt)
                    entry = (param, const)
                    if len(prefix) == 1 and len(stem) == 1:
                        shorts[opt] = entry
                    else:
                        longs[opt] = entry
        opts, largs, rargs = self.opts, [], list(args)

        def value_for(param) -> str | tuple:
            nargs = param["nargs"]
            if len(rargs) < nargs:
                raise _Usage()
            if nargs == 1:
                return rargs.pop(0)
            taken = tuple(rargs[:nargs])
            del rargs[:nargs]
            return taken

        def process(param, const, value) -> None:
            name = param["name"]
            if param["flag"]:
                if param["multiple"]:
                    opts.setdefault(name, []).append(const)
                elif param.get("count"):
                    opts[name] = opts.get(name, 0) + 1
                else:
                    opts[name] = const
            elif param["multiple"]:
                opts.setdefault(name, []).append(value)
            else:
                opts[name] = value

        def match_long(opt: str, explicit) -> None:
            if opt not in longs:
                raise KeyError(opt)
            param, const = longs[opt]
            if param["flag"]:
                if explicit is not None:
                    raise _Usage()
                process(param, const, None)
                return
            if explicit is not None:
                rargs.insert(0, explicit)
            process(param, const, value_for(param))

        def match_short(arg: str) -> None:
            prefix = arg[0]
            for i, ch in enumerate(arg[1:], start=2):
                entry = shorts.get(f"{prefix}{ch}")
                if entry is None:
                    if node["ignore_unknown"]:
                        raise Fallback()
                    raise _Usage()
                param, const = entry
                if param["flag"]:
                    process(param, const, None)
                    continue
                if i < len(arg):
                    rargs.insert(0, arg[i:])
                    process(param, const, value_for(param))
                    return
                process(param, const, value_for(param))

        arguments = [p for p in node["params"] if p["kind"] == "argument"]
        try:
            while rargs:
                arg = rargs.pop(0)
                if arg == "--":
                    break
                if arg[:1] == "-" and len(arg) > 1:
                    explicit = None
                    long_opt = arg
                    if "=" in arg:
                        long_opt, explicit = arg.split("=", 1)
                    try:
                        match_long(long_opt, explicit)
                    except KeyError:
                        if arg[:2] not in ("-", "--"):
                            match_short(arg)
                            continue
                        if node["ignore_unknown"]:
                            raise Fallback() from None
                        raise _Usage() from None
                elif node["interspersed"]:
                    largs.append(arg)
                else:
                    rargs.insert(0, arg)
                    break
            pargs, rest = _unpack_args(largs + rargs, [p["nargs"] for p in arguments])
            for param, value in zip(arguments, pargs):
                if param["nargs"] > 1:
                    holes = sum(1 for x in value if x is None)
                    if holes == len(value):
                        value = None
                    elif holes:
                        raise _Usage()
                if param["nargs"] == -1 and value == ():
                    value = None
                opts[param["name"]] = value
            largs = rest
        except _Usage:
            pass
        self.args = largs
        if node["group"] and largs:
            self.protected, self.args = largs[:1], largs[1:]

    def from_command_line(self, name: str) -> bool:
        return self.opts.get(name) is not None


def _split_opt(opt: str) -> tuple[str, str]:
    first = opt[:1]
    if first.isalnum():
        return "", opt
    if opt[1:2] == first:
        return opt[:2], opt[2:]
    return first, opt[1:]


def _unpack_args(args: list[str], nargs_spec: list[int]) -> tuple[tuple, list[str]]:
    """click.parser._unpack_args."""
    from collections import deque

    words, specs = deque(args), deque(nargs_spec)
    rv: list = []
    spos = None

    def fetch(c: deque):
        try:
            return c.popleft() if spos is None else c.pop()
        except IndexError:
            return None

    while specs:
        nargs = fetch(specs)
        if nargs == 1:
            rv.append(fetch(words))
        elif nargs > 1:
            x = [fetch(words) for _ in range(nargs)]
            if spos is not None:
                x.reverse()
            rv.append(tuple(x))
        elif nargs < 0:
            spos = len(rv)
            rv.append(None)
    if spos is not None:
        rv[spos] = tuple(words)
        words.clear()
        rv[spos + 1 :] = reversed(rv[spos + 1 :])
    return tuple(rv), list(words)


def _resolve(root: dict, args: list[str]) -> tuple[_Ctx, list[_Ctx]]:
    """click's _resolve_context: the innermost command's context (and its parents)."""
    ctx = _Ctx(root, args)
    chain = [ctx]
    rest = ctx.protected + ctx.args
    while rest and ctx.node["group"]:
        child = ctx.node["children"].get(rest[0])
        if child is None:
            break
        ctx = _Ctx(child, rest[1:])
        chain.append(ctx)
        rest = ctx.protected + ctx.args
    return ctx, chain


def completions(tree: dict, args: list[str], incomplete: str) -> list[tuple[str, list | None]]:
    """(value, help) items, as click's ShellComplete.get_completions returns them."""
    ctx, chain = _resolve(tree["root"], args)
    args = list(args)
    if incomplete == "=":
        incomplete = ""
    elif "=" in incomplete and incomplete[:1] == "-":
        name, _, incomplete = incomplete.partition("=")
        args.append(name)
    params = ctx.node["params"]
    if "--" not in args and incomplete[:1] == "-":
        return _command_items(ctx, incomplete)
    for param in params:
        if param["kind"] == "option" and not param["flag"]:
            last = None
            for index, arg in enumerate(reversed(args)):
                if index + 1 > param["nargs"]:
                    break
                if arg[:1] == "-":
                    last = arg
                    break
            if last is not None and last in param["opts"]:
                return _param_items(tree, chain, ctx, param, incomplete)
    for param in params:
        if param["kind"] == "argument":
            value = ctx.opts.get(param["name"])
            if (
                param["nargs"] == -1
                or value is None
                or (param["nargs"] > 1 and isinstance(value, (tuple, list)) and len(value) < param["nargs"])
            ):
                return _param_items(tree, chain, ctx, param, incomplete)
    return _command_items(ctx, incomplete)


def _command_items(ctx: _Ctx, incomplete: str) -> list:
    node = ctx.node
    items = []
    if node["group"]:
        items += [(name, help) for name, hidden, help in node["commands"] if name.startswith(incomplete) and not hidden]
    if incomplete and not incomplete[0].isalnum():
        for param in node["params"]:
            if param["kind"] != "option" or param["hidden"]:
                continue
            if not param["multiple"] and ctx.from_command_line(param["name"]):
                continue
            items += [
                (name, param["help"]) for name in param["opts"] + param["secondary"] if name.startswith(incomplete)
            ]
    return items


def _param_items(tree: dict, chain: list[_Ctx], ctx: _Ctx, param: dict, incomplete: str) -> list:
    if param["custom"] or param["kind"] == "other":
        raise Fallback()
    source = param["source"]
    if source:
        config = chain[0].opts.get("config") or os.environ.get("VQ_CONFIG") or None
        return [(v, None) for v in source_values(source, tree["static"], config, ctx.opts, incomplete)]
    if param["choices"] is not None:
        if param["case_sensitive"]:
            return [(c, None) for c in param["choices"] if c.startswith(incomplete)]
        return [(c, None) for c in param["choices"] if c.lower().startswith(incomplete.lower())]
    if param["file"]:
        return [(incomplete, None)]
    return []
