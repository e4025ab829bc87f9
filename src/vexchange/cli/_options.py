"""The options of every ``vex`` command that runs (export, import, migrate, pack create and
unpack, adapter apply), generated from ``RunOptions``'s fields: their names (``--batch-size``
for ``batch_size``), types (a ``Literal`` is a choice), defaults and help. The CLI writes none
of them out; it adds only what is not a run option (receipt and rejects paths, secrets,
``--json``, ``--quiet``).

``vexchange.engine.options`` is imported when a command with run options is declared, not with
this module: ``aliased`` and the secret options serve commands (verify, sign, convert, backup)
whose ``--help`` should not pay for the engine's option table."""

from __future__ import annotations

import collections.abc
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import click

from ._app import PendingParams

if typing.TYPE_CHECKING:
    import dataclasses

    from ..engine.options import OptionInfo, RunOptions

__all__ = ["AliasedOption", "run_option", "run_option_param", "run_options", "source_secret_option",
           "target_secret_option"]

F = TypeVar("F", bound=Callable[..., Any])


class AliasedOption(click.Option):
    """An option whose older spellings (``hidden_aliases``) still work but are not shown in
    ``--help``, so a renamed flag breaks no script."""

    def __init__(self, *args: Any, hidden_aliases: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.hidden_aliases = tuple(hidden_aliases)

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        shown = [o for o in self.opts if o not in self.hidden_aliases]
        saved, self.opts = self.opts, shown
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = saved


def aliased(*decls: str, hidden_aliases: Sequence[str], **kwargs: Any) -> Callable[[F], F]:
    """``click.option`` with older spellings that keep working, hidden from the help."""
    flags = [d for d in decls if d.startswith("-")]
    names = [d for d in decls if not d.startswith("-")]
    return click.option(*flags, *hidden_aliases, *names, cls=AliasedOption,
                        hidden_aliases=hidden_aliases, **kwargs)


def _flag(name: str, info: OptionInfo) -> str:
    return info.flag or "--" + name.replace("_", "-")


if typing.TYPE_CHECKING:  # click 8.5 types ParamType by its values; older clicks are not generic
    _ParamType = click.ParamType[Any, Any]
else:
    _ParamType = click.ParamType


class NumberOrWord(_ParamType):
    """A whole number at least ``minimum``, or one of ``words`` (``--workers 4`` or ``auto``):
    an ``int | Literal[...]`` run option."""

    name = "number-or-word"

    def __init__(self, words: tuple[str, ...], minimum: int | None) -> None:
        self.words = words
        self.minimum = minimum

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int) or value in self.words:
            return value
        try:
            number = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is neither a whole number nor {' or '.join(self.words)}", param, ctx)
        if self.minimum is not None and number < self.minimum:
            self.fail(f"{number} is less than {self.minimum}", param, ctx)
        return number


def _number_or_words(annotation: Any) -> tuple[str, ...] | None:
    """The words of an ``int | Literal["word", ...]`` annotation, else None."""
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) not in (typing.Union, types.UnionType) or int not in args:
        return None
    words = [w for a in args if typing.get_origin(a) is Literal for w in typing.get_args(a)]
    return tuple(words) if words and len(args) == 2 else None


def run_option(field: dataclasses.Field[Any], info: OptionInfo, annotation: Any) -> Callable[[F], F]:
    """The click option for one run option, as a decorator."""
    return click.option(*_run_option_decls(field, info), cls=AliasedOption, hidden_aliases=info.aliases,
                        **_run_option_kwargs(field, info, annotation))


def run_option_param(field: dataclasses.Field[Any], info: OptionInfo, annotation: Any) -> click.Option:
    """The click option for one run option, made now (for ``run_options(lazy=True)``)."""
    return AliasedOption(_run_option_decls(field, info), hidden_aliases=info.aliases,
                         **_run_option_kwargs(field, info, annotation))


def _run_option_decls(field: dataclasses.Field[Any], info: OptionInfo) -> list[str]:
    return [_flag(field.name, info), *info.aliases, field.name]


def _run_option_kwargs(field: dataclasses.Field[Any], info: OptionInfo, annotation: Any) -> dict[str, Any]:
    """What click.Option is given for a run option: its type from the annotation, its default and help."""
    from ..engine.options import literal_choices

    kwargs: dict[str, Any] = {"help": info.help, "default": field.default}
    base = _without_none(annotation)
    choices = literal_choices(annotation)
    words = _number_or_words(annotation)
    if info.timestamp:
        kwargs.update(type=str)  # ISO-8601 or epoch, parsed by RunOptions.from_arguments
    elif words is not None:
        kwargs.update(type=NumberOrWord(words, info.minimum if info.minimum is not None else 1))
    elif info.file:
        kwargs.update(type=click.Path(dir_okay=False))
    elif base is bool:
        kwargs.update(is_flag=True)
        if field.default is True:  # ``--no-verify``: the flag turns the option off
            kwargs.update(flag_value=False)
    elif choices is not None:
        kwargs.update(type=click.Choice(choices))
    elif typing.get_origin(base) in (collections.abc.Sequence, list, tuple):
        kwargs.update(multiple=True)
    elif base is int:
        kwargs.update(type=click.IntRange(min=info.minimum) if info.minimum is not None else int)
    elif base is float:
        kwargs.update(type=float)
    if info.metavar:
        kwargs["metavar"] = info.metavar
    if field.default is not None and not isinstance(field.default, bool):
        kwargs["show_default"] = True
    return kwargs


def _without_none(annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        rest = [a for a in typing.get_args(annotation) if a is not type(None)]
        return rest[0] if len(rest) == 1 else annotation
    return annotation


def _secrets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in values:
        name, sep, value = item.partition("=")
        if not sep or not name:
            # never echo what was given: without its NAME= it may be the secret itself
            raise click.BadParameter("expected NAME=VALUE, e.g. api_key=...; the value given has no NAME=")
        out[name.strip().lower()] = value
    return out


source_secret_option = click.option(
    "--source-secret", "source_secrets", multiple=True, metavar="NAME=VALUE", callback=_secrets,
    help="A secret for the source (api_key, password, token); prefer VEX_<CONNECTOR>_<NAME>"
         " variables, which stay out of process lists.")
"""``--source-secret NAME=VALUE`` (repeatable): a dict of secrets for the source's connector, for
every command that opens a source."""
target_secret_option = click.option(
    "--target-secret", "target_secrets", multiple=True, metavar="NAME=VALUE", callback=_secrets,
    help="A secret for the target, like --source-secret.")

_CLI_ONLY: list[Callable[[Any], Any]] = [
    click.option("--receipt", type=click.Path(dir_okay=False),
                 help="Receipt path [default: <target>.receipt.json]."),
    click.option("--rejects", type=click.Path(dir_okay=False),
                 help="Rejects path [default: <target>.rejects.jsonl]."),
    source_secret_option,
    target_secret_option,
    click.option("--json", "as_json", is_flag=True, help="Print the receipt as JSON on stdout."),
    click.option("--quiet", is_flag=True, help="No progress bar and no summary."),
]


def run_options(options: type[RunOptions] | None = None, *, lazy: bool = False) -> Callable[[F], F]:
    """Decorator: every field of ``options`` (``RunOptions`` when not given) as a click option of
    the command (named after the field, so the command hands its parameters to the API by
    name), then the CLI's own.

    ``lazy=True`` (the ``vex`` commands) makes the run options when the command's parameters are
    first read, not when its module is imported: the command must then be of
    ``vexchange.cli._app.Command``, which the ``vex`` groups make (a plain ``click.command``
    takes the default, which makes them now)."""

    def decorate(fn: F) -> F:
        if lazy:
            for decorator in reversed(_CLI_ONLY):
                fn = decorator(fn)
            fn.__click_params__.append(PendingParams(lambda: _made(options)))  # type: ignore[attr-defined]
            return fn
        from ..engine.options import option_fields

        decorators = [run_option(f, info, annotation) for f, info, annotation in option_fields(options)]
        for decorator in reversed([*decorators, *_CLI_ONLY]):
            fn = decorator(fn)
        return fn

    return decorate


def _made(options: type[RunOptions] | None) -> list[click.Parameter]:
    from ..engine.options import option_fields

    return [run_option_param(f, info, annotation) for f, info, annotation in option_fields(options)]
