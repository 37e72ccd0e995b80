"""Option values converted without pydantic: vq's options are str, bool, int, float and list[str].

Why: typer 0.29 converts every option through a pydantic TypeAdapter, which imports pydantic
(~90 ms) and builds an adapter per option on every command line: more than `rq info` takes to
start. vq's CLI only declares plain types, which need no more than `int("12")`; this module
converts those itself and leaves any other annotation (a file, a tuple, a datetime, a future
option type) to typer's own pydantic path, so nothing is lost when a new type is added.
Messages follow click's wording: `'abc' is not a valid integer.`, `0 is not in the range 1<=x<=10000.`
"""

from dataclasses import dataclass
from typing import Any, get_args, get_origin

_PATCHED = False

_TRUE = {"1", "true", "t", "yes", "y", "on"}
_FALSE = {"0", "false", "f", "no", "n", "off"}
_NAMES = {int: "integer", float: "float", bool: "boolean"}


def plain_type(annotation: Any) -> type | None:
    """The plain type behind an annotation this module converts, else None."""
    if annotation in (str, bool, int, float):
        return annotation
    if get_origin(annotation) is list and get_args(annotation) in ((str,),):
        return list
    return None


def convert(kind: type, value: Any, low: float | None = None, high: float | None = None) -> Any:
    """One value as `kind`; ValueError with the message a user reads when it is not one."""
    if kind is list:
        return [str(item) for item in value]
    if kind is str:
        return value if isinstance(value, str) else str(value)
    # kind is int, float or bool here (plain_type gives no other); the first test narrows value to a number
    result: float
    if isinstance(value, (int, float)) and isinstance(value, kind) and not (kind is int and isinstance(value, bool)):
        result = value
    elif kind is bool:
        text = str(value).strip().lower()
        if text not in _TRUE | _FALSE:
            raise ValueError(f"{value!r} is not a valid boolean.")
        result = text in _TRUE
    else:
        try:
            result = kind(str(value).strip())
        except ValueError:
            raise ValueError(f"{value!r} is not a valid {_NAMES[kind]}.") from None
    if (low is not None and result < low) or (high is not None and result > high):
        from typer._display import describe_number_range

        raise ValueError(f"{result} is not in the range {describe_number_range(low, high)}.")
    return result


def install() -> None:
    """Route typer's per-option conversion through `convert` for the plain types (once)."""
    global _PATCHED
    if _PATCHED:
        return
    _PATCHED = True
    try:
        from typer import core
        from typer._click.exceptions import BadParameter
        from typer._coercion import RuntimeParam
    except ImportError:  # another typer: its own conversion stays
        return
    typers_own = getattr(core, "build_runtime_param", None)
    if typers_own is None:
        return

    @dataclass(frozen=True)
    class PlainRuntimeParam(RuntimeParam):
        kind: type = str

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            info = self.parameter_info
            try:
                return convert(self.kind, value, info.min, info.max)
            except ValueError as exc:
                raise BadParameter(str(exc), ctx=ctx, param=param) from None

    def build_runtime_param(descriptor: Any) -> Any:
        kind = plain_type(descriptor.annotation)
        if kind is None or descriptor.file_annotation is not None or descriptor.is_choice:
            return typers_own(descriptor)
        return PlainRuntimeParam(annotation=descriptor.annotation, parameter_info=descriptor.parameter_info, kind=kind)

    core.build_runtime_param = build_runtime_param
