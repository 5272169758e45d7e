"""How every command's --help reads: plain text that fits 80 columns, options named whole
(never cut at a hyphen), values shown by what they are (FILE, N, DEVICE) rather than by
Python type, required arguments without brackets, and examples at the end.

Commands are registered with `cls=Command` (groups with `cls=Group`) and
`epilog=examples(EXAMPLES)`, where EXAMPLES is the list each command module keeps.
"""

from __future__ import annotations

from typing import Sequence

import typer
from typer.core import TyperCommand, TyperGroup

_NB_HYPHEN = "\u2011"  # stands in for "-" while wrapping, so --no-flip never breaks at a hyphen


class _Formatter(typer.Context.formatter_class):
    def write_text(self, text: str) -> None:
        super().write_text(text.replace("-", _NB_HYPHEN))

    def write_dl(self, rows, *args, **kwargs) -> None:
        super().write_dl([(first, second.replace("-", _NB_HYPHEN)) for first, second in rows], *args, **kwargs)

    def write_usage(self, prog: str, args: str = "", prefix: str | None = None) -> None:
        super().write_usage(prog, args.replace("-", _NB_HYPHEN), prefix)

    def getvalue(self) -> str:
        return super().getvalue().replace(_NB_HYPHEN, "-")


class _Context(typer.Context):
    formatter_class = _Formatter


def _metavar(param) -> str:
    """What a value of `param` is, for help that declares none: FILE rather than <path>."""
    desc = getattr(param, "type_descriptor", None)
    if desc is not None and desc.is_choice and desc.choices:
        return "|".join(str(c) for c in desc.choices)
    name = getattr(getattr(desc, "annotation", None), "__name__", "")
    return {"int": "N", "float": "NUMBER", "Path": "PATH", "bool": "BOOLEAN"}.get(name, "TEXT")


_UsageError = typer.BadParameter.__mro__[1]  # Click's UsageError, which Typer exports only through its subclasses


class OneLineUsageError(_UsageError):
    """A command line Click cannot parse, said in one line like every other error."""

    def show(self, file=None) -> None:
        where = f" (see `{self.ctx.command_path} --help`)" if self.ctx is not None else ""
        typer.echo(f"error: {self.message}{where}", file=file, err=True)


def _one_line(call, ctx):
    try:
        return call()
    except OneLineUsageError:
        raise
    except _UsageError as err:
        raise OneLineUsageError(" ".join(err.format_message().split()), err.ctx or ctx) from None


class _OneLineErrors:
    """Usage errors (a bad value, an unknown option or command) as one `error:` line."""

    def parse_args(self, ctx, args):
        return _one_line(lambda: super(_OneLineErrors, self).parse_args(ctx, args), ctx)


class Command(_OneLineErrors, TyperCommand):
    context_class = _Context
    usage: str | None = None  # the usage line after the command's name, when the default misleads

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            if param.metavar is None:
                if param.param_type_name == "argument":
                    param.metavar = (param.name or "").upper()
                elif not getattr(param, "is_flag", False):
                    param.metavar = _metavar(param)

    @classmethod
    def with_usage(cls, usage: str) -> type["Command"]:
        return type(f"{cls.__name__}WithUsage", (cls,), {"usage": usage})

    def collect_usage_pieces(self, ctx) -> list[str]:
        if self.usage is not None:
            return [self.usage]
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if param.param_type_name == "argument" and not getattr(param, "hidden", False):
                name = param.metavar + ("..." if param.nargs != 1 else "")
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def format_options(self, ctx, formatter) -> None:
        args, opts = [], []
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None or getattr(param, "hidden", False):
                continue
            if param.param_type_name == "argument":
                name = param.metavar + ("..." if param.nargs != 1 else "")
                # Typer puts the type after the name ("DATA <path>"); the name says it all.
                args.append((name, record[1]))
            else:
                opts.append(record)
        if args:
            with formatter.section("Arguments"):
                formatter.write_dl(args)
        if opts:
            with formatter.section("Options"):
                formatter.write_dl(opts)


class Group(_OneLineErrors, TyperGroup):
    context_class = _Context

    def resolve_command(self, ctx, args):
        return _one_line(lambda: super(Group, self).resolve_command(ctx, args), ctx)


def examples(lines: Sequence[str]) -> str:
    """The epilog of a --help: "Examples:" and one command per line, never re-wrapped."""
    return "Examples:\n\n\b\n" + "\n".join(lines)
