"""Pygments lexers for what a sched_ext debugging session reads, and a line highlighter.

- SchedExtDumpLexer: the kernel's sched_ext debug dump (scx_dump_state), raw or as
  trace_pipe lines (`sched_ext_dump: ...`): CPU state headers, task lines, DSQ ids, flags,
  event counters, backtraces.
- SchedLogLexer: scheduler stdout/stderr: EXIT lines, errors, libbpf/verifier output, and
  the DEBUG DUMP it embeds.
- KernelConsoleLexer: the guest's COM1 console: timestamps, sched_ext lines, BUG/WARNING/
  Oops/Call Trace.

The views highlight one line at a time (only what is on screen), so every rule is a
one-line rule.
"""

from __future__ import annotations

import os
from functools import lru_cache

from pygments.lexer import RegexLexer, bygroups, include
from pygments.token import (
    Comment,
    Error,
    Generic,
    Keyword,
    Name,
    Number,
    Operator,
    String,
    Text,
    Token,
    Whitespace,
)
from rich.style import Style
from rich.text import Text as RichText

_COMMON = [
    (r"0x[0-9a-fA-F]+", Number.Hex),
    (r"\b[A-Za-z_][\w.]*\+0x[0-9a-f]+/0x[0-9a-f]+\b", Name.Function),  # sym+off/len
    (r"\b\d+(\.\d+)?(ms|us|ns|s)\b", Number.Float),
    (r"\b\d+\b", Number.Integer),
    (r"[A-Za-z_][\w/-]*\[\d+\]", Name.Variable),  # comm[pid]
    (r"\w+=", Name.Attribute),
    (r"\s+", Whitespace),
    (r"\w+", Text),
    (r".", Text),
]

_BOL = r"(?:^|(?<=sched_ext_dump: ))"  # line start, also after a trace prefix
_TRACE_PREFIX = (r"^(\s*\S.*?-\d+\s+\[\d{3}\]\s+\S{4,5}\s+\d+\.\d+: )(sched_ext_dump: ?)",
                 bygroups(Comment, Comment.Special))


class SchedExtDumpLexer(RegexLexer):
    """scx_dump_state output, with or without the tracefs line prefix."""

    name = "sched_ext dump"
    aliases = ["scxdump"]
    filenames = ["*.sched_ext_dump.txt"]

    tokens = {
        "root": [
            (r"^#.*$", Comment),
            _TRACE_PREFIX,
            include("body"),
        ],
        "body": [
            (_BOL + r"(CPU)(\s+)(\d+)(\s*:)", bygroups(Keyword, Whitespace, Number.Integer, Operator)),
            (_BOL + r"(CPU states|Event counters|Backtrace:|DEBUG DUMP)\s*$", Generic.Heading),
            (_BOL + r"[-=]{4,}\s*$", Generic.Heading),
            (_BOL + r"(\s*)(\*?R|[SDIT])(\s+)([^\s\[]+)(\[\d+\])",
             bygroups(Whitespace, Keyword.Type, Whitespace, Name.Class, Number.Integer)),
            (r"\b(SCX_EV_\w+)(:)", bygroups(Name.Constant, Operator)),
            (r"\btriggered exit kind \d+", Generic.Error),
            (r"\bscx_bpf_error\b|\bruntime error\b|\bstall\b", Generic.Error),
            (r"(dsq_id=)(\S+)", bygroups(Name.Attribute, Name.Tag)),
            (r"(curr=)([^\s\[]+)(\[\d+\])", bygroups(Name.Attribute, Name.Class, Number.Integer)),
            (r"(class=)(\w+)", bygroups(Name.Attribute, Name.Builtin)),
            (r"(flags=|scx_state/flags=|dsq_flags=|ops_state/qseq=)([\w/]+)",
             bygroups(Name.Attribute, Number.Hex)),
            (r"[-+]\d+ms\b", Number.Float),
            *_COMMON,
        ],
    }


class SchedLogLexer(RegexLexer):
    """Scheduler output: EXIT lines, errors and warnings, libbpf and verifier lines."""

    name = "scheduler log"
    aliases = ["schedlog"]
    filenames = ["sched.log"]

    tokens = {
        "root": [
            (r"^EXIT:.*$", Generic.Error),
            (r"^(DEBUG DUMP)\s*$", Generic.Heading),
            (r"^(libbpf:)(.*(?i:fail|error|invalid|denied).*)$", bygroups(Name.Namespace, Generic.Error)),
            (r"^(libbpf:)(.*)$", bygroups(Name.Namespace, Generic.Traceback)),
            (r"^(\s*)(\d+)(: )(\([0-9a-f]{2}\))(.*)$",  # verifier instruction line
             bygroups(Whitespace, Number.Integer, Operator, Number.Hex, String)),
            (r"^-- (BEGIN|END) PROG LOAD LOG --$", Generic.Heading),
            (r"^(R\d+ .*\b(invalid|unbounded|out of bounds|!read_ok)\b.*|Verification failed:.*)$",
             Generic.Error),
            (r"^processed \d+ insns .*$", Generic.Strong),
            (r"^; .*$", Comment),  # verifier source annotation
            (r"(?i)\b(error|failed|fatal|panic|abort(ed)?)\b", Generic.Error),
            (r"(?i)\b(warn(ing)?)\b", Generic.Strong),
            include("dump"),
        ],
        "dump": SchedExtDumpLexer.tokens["body"],
    }


class KernelConsoleLexer(RegexLexer):
    """Kernel console: [ time] prefix, sched_ext lines, BUG/WARNING/Oops/Call Trace."""

    name = "kernel console"
    aliases = ["kconsole"]
    filenames = ["console.log"]

    tokens = {
        "root": [
            (r"^(\[\s*\d+\.\d+\])", Comment),
            (r"\b(BUG|Oops|Kernel panic|general protection fault|RIP)\b.*$", Generic.Error),
            (r"\b(WARNING|WARN)\b.*$", Generic.Strong),
            (r"\bCall Trace:", Generic.Heading),
            (r"(sched_ext)(:)", bygroups(Name.Namespace, Operator)),
            (r"\b(enabled)\b", Generic.Inserted),
            (r"\b(disabled)\b", Generic.Deleted),
            (r"\"[^\"]*\"", String),
            *_COMMON,
        ],
    }


# Token -> rich style. Theme-neutral ANSI colours so NO_COLOR and light terminals work.
TOKEN_STYLES: dict[object, Style] = {
    Comment: Style(color="bright_black"),
    Comment.Special: Style(color="bright_black", italic=True),
    Keyword: Style(color="cyan", bold=True),
    Keyword.Type: Style(color="magenta", bold=True),
    Generic.Heading: Style(color="cyan", bold=True, underline=True),
    Generic.Error: Style(color="red", bold=True),
    Generic.Strong: Style(color="yellow", bold=True),
    Generic.Inserted: Style(color="green"),
    Generic.Deleted: Style(color="yellow"),
    Generic.Traceback: Style(color="bright_black"),
    Name.Constant: Style(color="blue"),
    Name.Class: Style(color="green", bold=True),
    Name.Builtin: Style(color="green"),
    Name.Tag: Style(color="magenta"),
    Name.Attribute: Style(color="bright_black"),
    Name.Function: Style(color="blue"),
    Name.Variable: Style(color="green"),
    Name.Namespace: Style(color="cyan"),
    Number: Style(color="yellow"),
    String: Style(color="green"),
    Error: Style(color="red"),
}

TERMINAL = "terminal"  # raw terminal output (shell.log): its own colours, no lexer

LEXERS = {
    "scxdump": SchedExtDumpLexer,
    "schedlog": SchedLogLexer,
    "kconsole": KernelConsoleLexer,
}


@lru_cache(maxsize=8)
def get_lexer(name: str) -> RegexLexer | None:
    cls = LEXERS.get(name)
    return cls(stripnl=False, ensurenl=False) if cls else None


# Under NO_COLOR Textual draws every colour as a grey of its luminance, so red text on the
# dark background nearly vanishes: errors and headings get reverse video and bold instead.
NO_COLOR_STYLES: dict[object, Style] = {
    Generic.Error: Style(bold=True, reverse=True),
    Error: Style(bold=True, reverse=True),
    Generic.Strong: Style(bold=True),
    Generic.Heading: Style(bold=True, underline=True),
}
_NO_COLOR_TOKEN_STYLES = {**TOKEN_STYLES, **NO_COLOR_STYLES}


def _style_for(token) -> Style | None:
    styles = _NO_COLOR_TOKEN_STYLES if "NO_COLOR" in os.environ else TOKEN_STYLES
    while token is not Token:
        style = styles.get(token)
        if style is not None:
            return style
        token = token.parent
    return None


def highlight_line(line: str, lexer_name: str | None) -> RichText:
    """One line of text as rich Text styled by the named lexer (plain when None)."""
    if lexer_name == TERMINAL:
        return RichText.from_ansi(line, no_wrap=True, end="")
    text = RichText(line, no_wrap=True, end="")
    lexer = get_lexer(lexer_name) if lexer_name else None
    if lexer is None or not line:
        return text
    for index, token, value in lexer.get_tokens_unprocessed(line):
        style = _style_for(token)
        if style is not None and value:
            text.stylize(style, index, index + len(value))
    return text


def highlight_text(text: str, lexer_name: str | None) -> RichText:
    """A multi-line block, highlighted line by line (sections, dumps)."""
    out = RichText(no_wrap=True, end="")
    for i, line in enumerate(text.split("\n")):
        if i:
            out.append("\n")
        out.append_text(highlight_line(line, lexer_name))
    return out
