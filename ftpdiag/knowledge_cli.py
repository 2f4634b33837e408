"""``ftpdiag explain|compare|codes``: the reply-code knowledge base on the command line.

All prose and labels come from the catalog (``ftpdiag/rules/catalog/<lang>.toml``); this module
only lays them out as text (fits 100 columns), JSON or Markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

from ftpdiag.core.messages import is_standard_code
from ftpdiag.i18n import add_lang_argument, error_line, label, lang_from_argv, resolve, use
from ftpdiag.rules.catalog import (
    STATE_TAGS,
    Catalog,
    CatalogError,
    Explanation,
    first_sentence,
    load_catalog,
)

__all__ = ["WIDTH", "build_parser", "main", "register"]

WIDTH = 100
_INDENT = "    "
_CODE_RE = re.compile(r"[1-9][0-9]{2,}")


class UsageError(Exception):
    """A malformed argument, reported as one ``ftpdiag: error:`` line with exit status 2."""


# -- argument handling -----------------------------------------------------------------------


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``explain``, ``compare`` and ``codes`` subcommands to ``subparsers``."""
    explain = subparsers.add_parser(
        "explain",
        help=label("help.explain"),
        description=label("help.explain_description"),
    )
    explain.add_argument("codes", nargs="+", metavar="CODE", help=label("help.explain_codes"))
    explain.add_argument("--after", metavar="COMMAND", help=label("help.after"))
    explain.add_argument(
        "--state",
        nargs="+",
        action="extend",
        default=[],
        metavar="TAG",
        help=label("help.state", tags=", ".join(sorted(STATE_TAGS))),
    )
    explain.add_argument("--text", default="", metavar="TEXT", help=label("help.text"))
    add_lang_argument(explain)
    explain.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help=label("help.format")
    )
    explain.set_defaults(func=run_explain)

    compare = subparsers.add_parser(
        "compare",
        help=label("help.compare"),
        description=label("help.compare_description"),
    )
    compare.add_argument("codes", nargs=2, metavar="CODE", help=label("help.compare_codes"))
    add_lang_argument(compare)
    compare.add_argument(
        "--format", choices=("text", "json", "markdown"), default="text", help=label("help.format")
    )
    compare.set_defaults(func=run_compare)

    codes = subparsers.add_parser(
        "codes",
        help=label("help.codes"),
        description=label("help.codes_description"),
    )
    codes.add_argument(
        "--class",
        dest="reply_class",
        choices=("1", "2", "3", "4", "5", "6"),
        help=label("help.class"),
    )
    codes.add_argument(
        "--group",
        choices=("0", "1", "2", "3", "5"),
        help=label("help.group"),
    )
    add_lang_argument(codes)
    codes.add_argument(
        "--format", choices=("text", "json"), default="text", help=label("help.format")
    )
    codes.set_defaults(func=run_codes)


def _guarded(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except UsageError as exc:
            _error(str(exc))
            return 2
        except CatalogError as exc:
            _error(str(exc))
            return 1

    wrapper.__name__ = run.__name__
    wrapper.__doc__ = run.__doc__
    return wrapper


def _error(message: str) -> None:
    print(error_line(message), file=sys.stderr)


def parse_code(raw: str) -> int:
    """Turn a command-line reply code into an int, or raise :class:`UsageError`."""
    value = raw.strip()
    if not _CODE_RE.fullmatch(value):
        raise UsageError(label("cli.bad_code", text=raw))
    return int(value)


def _catalog(args: argparse.Namespace) -> Catalog:
    return load_catalog(resolve(args.lang))


def _state_tags(raw: Sequence[str]) -> frozenset[str]:
    tags = {tag.strip() for item in raw for tag in item.split(",") if tag.strip()}
    unknown = sorted(tags - STATE_TAGS)
    if unknown:
        raise UsageError(
            label("cli.bad_state", tags=", ".join(unknown), choices=", ".join(sorted(STATE_TAGS)))
        )
    return frozenset(tags)


# -- shared helpers ----------------------------------------------------------------------------


def _class_label(catalog: Catalog, code: int) -> str:
    """``"4xx Transient Negative"``, or the non-standard label outside 100..699."""
    name = catalog.class_name(code)
    return f"{str(code)[0]}xx {name}" if is_standard_code(code) else name


def _group_label(catalog: Catalog, code: int) -> str:
    group = catalog.group_name(code)
    return f"x{str(code)[1]}x {group}" if group else ""


def _class_line(catalog: Catalog, code: int) -> str:
    group = _group_label(catalog, code)
    label = _class_label(catalog, code)
    return f"{label} — {group}" if group else label


def _explanation_json(catalog: Catalog, exp: Explanation) -> dict[str, Any]:
    return {
        "code": exp.code,
        "lang": exp.lang,
        "title": exp.title,
        "class": exp.reply_class,
        "class_digit": str(exp.code)[0] if is_standard_code(exp.code) else None,
        "group": exp.group,
        "severity": exp.severity,
        "standard": exp.standard,
        "known": exp.known,
        "variant": exp.variant,
        "description": exp.description,
        "when": exp.when,
        "remedy": exp.remedy,
        "references": list(exp.references),
        "tells": catalog.class_tells(exp.code),
        "next": catalog.class_next(exp.code),
    }


def _wrap(text: str, indent: str = _INDENT, first: str | None = None) -> list[str]:
    return textwrap.wrap(
        text,
        width=WIDTH,
        initial_indent=indent if first is None else first,
        subsequent_indent=indent,
        break_on_hyphens=False,
    ) or [indent.rstrip()]


def _labelled(label: str, text: str, indent: str = _INDENT) -> list[str]:
    """``label`` then ``text`` wrapped so continuation lines align after the label."""
    first = f"{indent}{label}  "
    return _wrap(text, indent=" " * len(first), first=first)


def _json(data: object) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2)


# -- explain -----------------------------------------------------------------------------------


@_guarded
def run_explain(args: argparse.Namespace) -> int:
    """Print explanations for ``args.codes``; 2 on a malformed code, else 0."""
    codes = [parse_code(raw) for raw in args.codes]
    state = _state_tags(args.state)
    catalog = _catalog(args)
    explanations = [
        catalog.explain(code, after=args.after, state=state, text=args.text) for code in codes
    ]
    if args.format == "json":
        print(_json([_explanation_json(catalog, exp) for exp in explanations]))
    elif args.format == "markdown":
        print("\n\n".join(_explain_markdown(catalog, exp) for exp in explanations))
    else:
        print(
            ("\n\n" + "─" * WIDTH + "\n\n").join(
                _explain_text(catalog, exp) for exp in explanations
            )
        )
    return 0


def _header(exp: Explanation) -> str:
    return f"{exp.code}  {exp.title}"


def _references(catalog: Catalog, exp: Explanation) -> list[str]:
    """The references, plus the non-standard marker for known codes no RFC defines."""
    refs = list(exp.references)
    if exp.known and not exp.standard:
        refs.append(f"[{_nonstandard(catalog, exp.code)}]")
    return refs


def _nonstandard(catalog: Catalog, code: int) -> str:
    """What marks a code no RFC defines: a Winsock error outside 100..699, else "non-standard"."""
    return catalog.nonstandard_marker if 100 <= code <= 699 else catalog.nonstandard_title


def _explain_text(catalog: Catalog, exp: Explanation) -> str:
    h = catalog.headings
    lines = _wrap(_header(exp), indent=" " * (len(str(exp.code)) + 2), first="")
    lines += _wrap(f"{h['class']}: {_class_line(catalog, exp.code)}", indent="  ", first="")
    for key, text in (
        ("description", exp.description),
        ("when", exp.when),
        ("remedy", exp.remedy),
    ):
        lines += ["", h[key], *_wrap(text)]
    for key, text in (
        ("tells", catalog.class_tells(exp.code)),
        ("next", catalog.class_next(exp.code)),
    ):
        if text:
            lines += ["", h[key], *_wrap(text)]
    lines += ["", h["references"], *_wrap(", ".join(_references(catalog, exp)))]
    return "\n".join(lines)


def _explain_markdown(catalog: Catalog, exp: Explanation) -> str:
    h = catalog.headings
    parts = [
        f"## {_header(exp)}",
        f"**{h['class']}:** {_class_line(catalog, exp.code)}",
        f"### {h['description']}\n\n{exp.description}",
        f"### {h['when']}\n\n{exp.when}",
        f"### {h['remedy']}\n\n{exp.remedy}",
        *(
            f"### {h[key]}\n\n{text}"
            for key, text in (
                ("tells", catalog.class_tells(exp.code)),
                ("next", catalog.class_next(exp.code)),
            )
            if text
        ),
        f"### {h['references']}\n\n" + "\n".join(f"- {ref}" for ref in _references(catalog, exp)),
    ]
    return "\n\n".join(parts)


# -- compare -----------------------------------------------------------------------------------


@_guarded
def run_compare(args: argparse.Namespace) -> int:
    """Print two codes side by side with their key differences; 2 on a malformed code."""
    first, second = (parse_code(raw) for raw in args.codes)
    catalog = _catalog(args)
    pair = (catalog.explain(first), catalog.explain(second))
    if args.format == "json":
        print(_json(_compare_json(catalog, pair)))
    elif args.format == "markdown":
        print(_compare_markdown(catalog, pair))
    else:
        print(_compare_text(catalog, pair))
    return 0


def _which(exp: Explanation) -> str:
    return f"{first_sentence(exp.description)} {first_sentence(exp.when)}"


def _compare_json(catalog: Catalog, pair: tuple[Explanation, Explanation]) -> dict[str, Any]:
    a, b = pair
    return {
        "lang": catalog.lang,
        "codes": [_explanation_json(catalog, a), _explanation_json(catalog, b)],
        "differences": {
            "class": [_class_label(catalog, a.code), _class_label(catalog, b.code)],
            "group": [a.group, b.group],
            "tells": [catalog.class_tells(a.code), catalog.class_tells(b.code)],
            "next": [catalog.class_next(a.code), catalog.class_next(b.code)],
            "severity": [a.severity, b.severity],
        },
        "which": [
            {"code": a.code, "text": _which(a)},
            {"code": b.code, "text": _which(b)},
        ],
        "headings": dict(catalog.headings),
    }


def _compare_text(catalog: Catalog, pair: tuple[Explanation, Explanation]) -> str:
    h = catalog.headings
    a, b = pair
    width = max(len(str(a.code)), len(str(b.code)))
    lines = _wrap(f"{a.code} {a.title}  vs  {b.code} {b.title}", indent="", first="")
    lines.append("═" * min(WIDTH, max(len(line) for line in lines)))
    for exp in pair:
        lines += _wrap(_header(exp), indent=" " * (width + 2), first="")
        lines += _wrap(
            f"{h['class']}: {_class_line(catalog, exp.code)}",
            indent=" " * (width + 4),
            first=" " * (width + 2),
        )

    def side_by_side(label: str, texts: tuple[str, str], indent: str = "  ") -> list[str]:
        out = [f"{indent}{label}"] if label else []
        for exp, text in zip(pair, texts, strict=True):
            out += _labelled(str(exp.code).rjust(width), text or "—", indent=indent + "  ")
        return out

    lines += ["", h["description"], *side_by_side("", (a.description, b.description), indent="")]
    lines += ["", h["differences"]]
    lines += side_by_side(h["class"], (_class_line(catalog, a.code), _class_line(catalog, b.code)))
    lines += side_by_side(h["tells"], (catalog.class_tells(a.code), catalog.class_tells(b.code)))
    lines += side_by_side(h["next"], (catalog.class_next(a.code), catalog.class_next(b.code)))
    for key in ("when", "remedy"):
        lines += ["", h[key], *side_by_side("", (getattr(a, key), getattr(b, key)), indent="")]
    lines += ["", h["which"], *side_by_side("", (_which(a), _which(b)), indent="")]
    lines += [
        "",
        h["references"],
        *side_by_side(
            "",
            (", ".join(_references(catalog, a)), ", ".join(_references(catalog, b))),
            indent="",
        ),
    ]
    return "\n".join(lines)


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _compare_markdown(catalog: Catalog, pair: tuple[Explanation, Explanation]) -> str:
    h = catalog.headings
    a, b = pair
    rows = [
        ("", f"**{a.code}** {a.title}", f"**{b.code}** {b.title}"),
        (h["class"], _class_line(catalog, a.code), _class_line(catalog, b.code)),
        (h["tells"], catalog.class_tells(a.code), catalog.class_tells(b.code)),
        (h["next"], catalog.class_next(a.code), catalog.class_next(b.code)),
    ]
    table = [
        "| " + " | ".join(_md_cell(cell) for cell in rows[0]) + " |",
        "|---|---|---|",
        *("| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows[1:]),
    ]
    parts = [
        f"## {a.code} {a.title} vs {b.code} {b.title}",
        f"### {h['differences']}",
        "\n".join(table),
    ]
    for key in ("description", "when", "remedy"):
        parts.append(f"### {h[key]}")
        parts.append("\n".join(f"- **{e.code}**: {getattr(e, key)}" for e in pair))
    parts.append(f"### {h['which']}")
    parts.append("\n".join(f"- **{e.code}**: {_which(e)}" for e in pair))
    parts.append(f"### {h['references']}")
    parts.append("\n".join(f"- **{e.code}**: {', '.join(_references(catalog, e))}" for e in pair))
    return "\n\n".join(parts)


# -- codes -------------------------------------------------------------------------------------


@_guarded
def run_codes(args: argparse.Namespace) -> int:
    """Print the table of all codes, optionally filtered by class and group."""
    catalog = _catalog(args)
    selected = []
    for code in catalog.codes():
        in_range = is_standard_code(code)
        if args.reply_class is not None and not (in_range and str(code)[0] == args.reply_class):
            continue
        if args.group is not None and not (in_range and str(code)[1] == args.group):
            continue
        selected.append(catalog.explain(code))
    if args.format == "json":
        print(
            _json(
                [
                    {
                        "code": exp.code,
                        "class": exp.reply_class,
                        "group": exp.group,
                        "title": exp.title,
                        "severity": exp.severity,
                        "standard": exp.standard,
                        "variants": catalog.variants(exp.code),
                    }
                    for exp in selected
                ]
            )
        )
        return 0
    code_w = max((len(str(exp.code)) for exp in selected), default=3) + 1
    class_w = max((len(_class_label(catalog, exp.code)) for exp in selected), default=0) + 2
    class_w = min(class_w, 40)
    for exp in selected:
        marker = "*" if not exp.standard else ""
        first = f"{exp.code}{marker}".ljust(code_w) + " " + _class_label(catalog, exp.code)
        first = first.ljust(code_w + 1 + class_w)
        for line in _wrap(exp.title, indent=" " * (code_w + 1 + class_w), first=first):
            print(line)
    markers = dict.fromkeys(_nonstandard(catalog, exp.code) for exp in selected if not exp.standard)
    if markers:
        print()
        for marker in markers:
            print(f"* {marker}")
    return 0


# -- stand-alone entry point -------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """A parser with just the knowledge subcommands (the full CLI lives in ftpdiag.cli)."""
    parser = argparse.ArgumentParser(prog="ftpdiag", description=label("help.knowledge"))
    register(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``explain``, ``compare`` or ``codes``; returns the exit status."""
    use(resolve(lang_from_argv(sys.argv[1:] if argv is None else argv)))
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = func(args)
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. `ftpdiag codes | head`
        devnull = open(os.devnull, "w")  # noqa: SIM115 - must outlive this function
        os.dup2(devnull.fileno(), sys.stdout.fileno())
        return 0
    return status


if __name__ == "__main__":
    sys.exit(main())
