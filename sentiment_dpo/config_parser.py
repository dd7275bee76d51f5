"""The command line and YAML files of a stage, built from its config dataclass (config.py).

Every field becomes a `--flag` (underscores as dashes) with the field's `help`. `--config FILE.yaml` supplies values
for any field; flags on the command line win; the dataclass's `__post_init__` checks the result.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from .errors import PipelineError


def _base_type(annotation: Any) -> type:
    """`int`, `float`, `str` or `bool` from an annotation such as `str | None`."""
    hint = annotation
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(arg for arg in typing.get_args(hint) if arg is not type(None))
    return hint


def make_parser(config_cls: type, description: str, positional: str | None = None) -> argparse.ArgumentParser:
    """An argparse parser with one flag per dataclass field (and `positional` as a positional argument)."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config", metavar="FILE.yaml", help="YAML file setting any of the options below.")
    for f in dataclasses.fields(config_cls):
        if f.name == positional:
            parser.add_argument(f.name, nargs="?", default=argparse.SUPPRESS, help=f.metadata.get("help", ""))
        else:
            add_options(parser, config_cls, [f.name])
    return parser


def add_options(parser: argparse.ArgumentParser | argparse._ArgumentGroup, config_cls: type,
                names: typing.Iterable[str]) -> None:
    """One `--flag` per named field of `config_cls`, with its help and type; unset flags stay out of the result."""
    hints = typing.get_type_hints(config_cls)
    by_name = {f.name: f for f in dataclasses.fields(config_cls)}
    for name in names:
        f = by_name[name]
        kind = _base_type(hints[f.name])
        help_text = f.metadata.get("help", "")
        flag = "--" + f.name.replace("_", "-")
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if typing.get_origin(kind) is list:
            element = _base_type(typing.get_args(kind)[0])
            parser.add_argument(flag, type=_parse_bool if element is bool else element, nargs="+",
                                default=argparse.SUPPRESS, metavar="N" if element is int else f.name.upper(),
                                help=f"{help_text}" if default is None else
                                f"{help_text} (default: {' '.join(map(str, default))})")
        elif kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                help=f"{help_text} (default: {default})")
        else:
            parser.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=f.name.upper(),
                                help=help_text if default is None else f"{help_text} (default: {default})")


def _parse_bool(text: str) -> bool:
    """A list of booleans on the command line (`--soft-labels false true`); bool("false") would be True."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def read_yaml_mapping(path: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; errors name the file and the fix."""
    file = Path(path)
    if not file.exists():
        raise PipelineError(f"--config {path} not found; pass an existing YAML file")
    if not file.is_file():
        raise PipelineError(f"--config {path} is not a file; pass a YAML file")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise PipelineError(f"--config {path} is not valid YAML ({err.__class__.__name__}); fix the file") from None
    except UnicodeDecodeError:
        raise PipelineError(f"--config {path} is not UTF-8 text; save it as UTF-8") from None
    except OSError as err:
        raise PipelineError(f"--config {path} cannot be read ({err.strerror}); check its permissions") from None
    if not isinstance(data, dict):
        raise PipelineError(f"--config {path} must be a mapping of option: value")
    return data


def check_options(data: dict[str, Any], config_cls: type, where: str) -> dict[str, Any]:
    """Options for `config_cls` (dashes or underscores), rejecting unknown names."""
    # A stage's resolved config can be passed back in: its provenance block is a record, not an option.
    data = {str(k).replace("-", "_"): v for k, v in data.items() if k != "provenance"}
    known = {f.name for f in dataclasses.fields(config_cls)}
    for name, reason in getattr(config_cls, "REFUSED", {}).items():
        if name in data:
            raise PipelineError(f"{where} sets {name}, which this command cannot honour: {reason}; remove it")
    unknown = sorted(set(data) - known)
    if unknown:
        raise PipelineError(f"{where} sets unknown option(s) {', '.join(unknown)}; see --help for the list")
    return data


def load_yaml_config(path: str, config_cls: type) -> dict[str, Any]:
    return check_types(check_options(read_yaml_mapping(path), config_cls, f"--config {path}"), config_cls,
                       f"--config {path}")


def _coerce(value: Any, kind: Any) -> Any:
    """`value` as the annotated `kind`, or raise TypeError. YAML reads `1e-4` (no dot) as a string: a number
    written in a float option's place is accepted as one; a bool is never an int here."""
    if kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise TypeError("a number")
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise TypeError("a whole number")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError("true or false")
    if kind is str:
        if isinstance(value, str):
            return value
        raise TypeError("a string")
    if typing.get_origin(kind) is list:
        values = value if isinstance(value, list) else [value]  # `betas: 0.1` means one value
        element = typing.get_args(kind)[0]
        try:
            return [_coerce(v, element) for v in values]
        except TypeError as err:
            raise TypeError(f"a list of {err} values") from None
    return value


def check_types(data: dict[str, Any], config_cls: type, where: str) -> dict[str, Any]:
    """Each value of a YAML file as its option's type; one line naming the option, the file and the type."""
    hints = typing.get_type_hints(config_cls)
    out = {}
    for name, value in data.items():
        hint = hints[name]
        optional = isinstance(hint, types.UnionType) and type(None) in typing.get_args(hint)
        if value is None and optional:
            out[name] = None
            continue
        try:
            out[name] = _coerce(value, _base_type(hint))
        except TypeError as err:
            raise PipelineError(f"{where}: {name} must be {err}, got {value!r}; fix the value in the file") from None
    return out


def parse_config(config_cls: type, parser: argparse.ArgumentParser, argv: list[str] | None = None,
                 required: str | None = None,
                 defaults: Callable[[dict[str, Any]], dict[str, Any]] | None = None) -> Any:
    """Defaults < `defaults(values)` < YAML file < command line, validated by the dataclass's `__post_init__`.
    `required` names a positional argument that must come from the command line or the file (its default is never
    assumed); `defaults` gives defaults that depend on the other values (a preset's training defaults)."""
    args = vars(parser.parse_args(argv))
    config_file = args.pop("config", None)
    values = load_yaml_config(config_file, config_cls) if config_file else {}
    values.update(args)
    if required and required not in values:
        raise PipelineError(f"{required.upper()} is required: name it first, e.g. `{parser.prog} sigmoid` "
                            f"(see --help for the choices)")
    if defaults is not None:
        values = defaults(values) | values
    try:
        return config_cls(**values)
    except TypeError as err:  # a YAML value of the wrong shape
        raise PipelineError(f"bad configuration: {err}") from None
