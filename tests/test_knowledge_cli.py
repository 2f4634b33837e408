"""Tests for ``ftpdiag explain|compare|codes`` (ftpdiag.knowledge_cli)."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from ftpdiag import knowledge_cli
from ftpdiag.knowledge_cli import WIDTH, main, register
from ftpdiag.rules.catalog import LANGUAGES, load_catalog

EXPLAIN_KEYS = [
    "code", "lang", "title", "class", "class_digit", "group", "severity", "standard", "known",
    "variant", "description", "when", "remedy", "references", "tells", "next",
]


@pytest.fixture(autouse=True)
def english_locale(monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test under an English locale unless it sets its own."""
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "en_US.UTF-8")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """Call main(argv) and return (status, stdout, stderr)."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def assert_fits(text: str) -> None:
    """Every line fits a 100-column terminal."""
    too_long = [line for line in text.splitlines() if len(line) > WIDTH]
    assert not too_long, too_long[:3]


# -- wiring ------------------------------------------------------------------------------------


def test_register_adds_three_subcommands() -> None:
    """register() adds explain, compare and codes, each with a func returning an int."""
    parser = argparse.ArgumentParser(prog="ftpdiag")
    register(parser.add_subparsers(dest="command"))
    for argv in (["explain", "220"], ["compare", "220", "426"], ["codes"]):
        args = parser.parse_args(argv)
        assert callable(args.func)
        assert args.func(args) == 0


def test_main_without_command(capsys: pytest.CaptureFixture[str]) -> None:
    """Running without a subcommand prints help to stderr and returns 2."""
    status, out, err = run(capsys)
    assert status == 2 and out == "" and "explain" in err


def test_module_entry_point() -> None:
    """python -m ftpdiag.knowledge_cli explain 220 works as a program."""
    result = subprocess.run(
        [sys.executable, "-m", "ftpdiag.knowledge_cli", "explain", "220", "--lang", "en"],
        capture_output=True, text=True, check=False, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("220  Service ready for new user")


# -- explain -----------------------------------------------------------------------------------


def test_explain_text(capsys: pytest.CaptureFixture[str]) -> None:
    """Text output shows title, class, group and every section under the English headings."""
    status, out, err = run(capsys, "explain", "220")
    assert status == 0 and err == ""
    assert out.startswith("220  Service ready for new user\n")
    assert "Class: 2xx Positive Completion — x2x Connections" in out
    for heading in ("Description", "When you see this code", "How to fix", "References",
                    "What it tells the client", "Who acts next"):
        assert f"\n{heading}\n" in out
    assert "RFC 959 §4.2.1" in out
    assert_fits(out)


def test_explain_several_codes(capsys: pytest.CaptureFixture[str]) -> None:
    """Several codes are explained in order."""
    status, out, _ = run(capsys, "explain", "425", "426")
    assert status == 0
    assert out.index("425  Can't open data connection") < out.index("426  Connection closed")


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_code_and_variant_fits_100_columns(
    capsys: pytest.CaptureFixture[str], lang: str
) -> None:
    """explain output for every code stays within 100 columns in both languages."""
    codes = [str(code) for code in load_catalog(lang).codes()]
    status, out, _ = run(capsys, "explain", *codes, "--lang", lang)
    assert status == 0
    assert_fits(out)
    for state in ("greeting", "prot_p", "abort", "transfer", "passive", "active"):
        status, out, _ = run(capsys, "explain", *codes, "--lang", lang, "--state", state)
        assert status == 0
        assert_fits(out)


def test_explain_json(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON output is a list of objects with stable keys."""
    status, out, _ = run(capsys, "explain", "220", "10054", "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert [list(item) for item in data] == [EXPLAIN_KEYS, EXPLAIN_KEYS]
    assert data[0]["class"] == "Positive Completion" and data[0]["class_digit"] == "2"
    assert data[0]["standard"] is True and data[0]["known"] is True
    assert data[1]["standard"] is False and data[1]["class_digit"] is None


def test_explain_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    """Markdown output uses headings and bullet references."""
    status, out, _ = run(capsys, "explain", "426", "--format", "markdown")
    assert status == 0
    assert out.startswith("## 426  Connection closed; transfer aborted")
    assert "### How to fix" in out and "- RFC 959 §4.2.1" in out


def test_explain_variant_selection(capsys: pytest.CaptureFixture[str]) -> None:
    """--after, --state and --text select the matching variant."""
    status, out, _ = run(
        capsys, "explain", "425", "--state", "prot_p", "passive", "--text",
        "SSL connection failed: session reuse required", "--format", "json",
    )
    assert status == 0 and json.loads(out)[0]["variant"] == "tls-reuse"
    status, out, _ = run(capsys, "explain", "550", "--after", "stor", "--format", "json")
    assert status == 0 and json.loads(out)[0]["variant"] == "after-stor"
    status, out, _ = run(capsys, "explain", "426", "--state", "abort,prot_p", "--format", "json")
    assert status == 0 and json.loads(out)[0]["variant"] == "after-abort"


def test_explain_bad_state_tag(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown state tag is a one-line usage error with status 2."""
    status, out, err = run(capsys, "explain", "425", "--state", "pasv")
    assert status == 2 and out == ""
    assert err.startswith("ftpdiag: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("raw", ["abc", "42", "042", "4.2", "-425", ""])
def test_explain_malformed_code(capsys: pytest.CaptureFixture[str], raw: str) -> None:
    """A malformed code prints one 'ftpdiag: error:' line on stderr and returns 2."""
    status, out, err = run(capsys, "explain", raw) if raw != "-425" else run(
        capsys, "explain", "--", raw
    )
    assert status == 2 and out == ""
    assert err.startswith("ftpdiag: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("code", ["299", "999", "12345"])
def test_explain_unknown_code(capsys: pytest.CaptureFixture[str], code: str) -> None:
    """A well-formed unknown code gets the generic explanation and status 0."""
    status, out, _ = run(capsys, "explain", code, "--format", "json")
    assert status == 0
    item = json.loads(out)[0]
    assert item["known"] is False and item["code"] == int(code)
    status, out, _ = run(capsys, "explain", code)
    assert status == 0 and code in out


def test_explain_nonstandard_marker(capsys: pytest.CaptureFixture[str]) -> None:
    """Winsock codes are marked non-standard in text output."""
    status, out, _ = run(capsys, "explain", "10054")
    assert status == 0
    assert "[Non-standard (Winsock error)]" in out
    assert "Class: Non-standard (Winsock error)" in out


def test_explain_vietnamese(capsys: pytest.CaptureFixture[str]) -> None:
    """--lang vi uses the Vietnamese headings."""
    vi = load_catalog("vi")
    status, out, _ = run(capsys, "explain", "220", "--lang", "vi")
    assert status == 0
    assert f"\n{vi.headings['description']}\n" in out
    assert vi.explain(220).title in out


def test_default_language_from_environment(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without --lang the language comes from the locale environment."""
    monkeypatch.setenv("LANG", "vi_VN.UTF-8")
    status, out, _ = run(capsys, "explain", "220", "--format", "json")
    assert status == 0 and json.loads(out)[0]["lang"] == "vi"


# -- compare -----------------------------------------------------------------------------------


def test_compare_220_426_text(capsys: pytest.CaptureFixture[str]) -> None:
    """compare 220 426 reproduces the seed page: classes, differences, when, fixes, which."""
    en = load_catalog("en")
    status, out, err = run(capsys, "compare", "220", "426")
    assert status == 0 and err == ""
    assert out.startswith(
        "220 Service ready for new user  vs  426 Connection closed; transfer aborted\n"
    )
    assert "2xx Positive Completion — x2x Connections" in out
    assert "4xx Transient Negative — x2x Connections" in out
    for heading in ("Key differences", "What it tells the client", "Who acts next",
                    "When you see this code", "How to fix", "When to use which"):
        assert heading in out
    flat = " ".join(out.split())
    for code in (220, 426):
        assert en.class_tells(code) in flat
        assert en.class_next(code) in flat
    assert out.index("Key differences") < out.index("When to use which")
    assert_fits(out)


def test_compare_json(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON compare output has both codes, the differences and the closing section."""
    status, out, _ = run(capsys, "compare", "220", "426", "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert list(data) == ["lang", "codes", "differences", "which", "headings"]
    assert [item["code"] for item in data["codes"]] == [220, 426]
    assert data["differences"]["class"] == ["2xx Positive Completion", "4xx Transient Negative"]
    assert list(data["differences"]) == ["class", "group", "tells", "next", "severity"]
    assert [item["code"] for item in data["which"]] == [220, 426]


def test_compare_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    """Markdown compare output is a table plus sections."""
    status, out, _ = run(capsys, "compare", "220", "426", "--format", "markdown")
    assert status == 0
    assert out.startswith("## 220 Service ready for new user vs 426")
    assert "| Class | 2xx Positive Completion — x2x Connections |" in out
    assert "### When to use which" in out


@pytest.mark.parametrize("lang", LANGUAGES)
def test_compare_fits_in_every_language(capsys: pytest.CaptureFixture[str], lang: str) -> None:
    """compare text output fits 100 columns, including unknown and Winsock codes."""
    for pair in (("220", "426"), ("425", "10054"), ("299", "999"), ("530", "550")):
        status, out, _ = run(capsys, "compare", *pair, "--lang", lang)
        assert status == 0
        assert_fits(out)


def test_compare_malformed(capsys: pytest.CaptureFixture[str]) -> None:
    """A malformed code in compare is a one-line error with status 2."""
    status, out, err = run(capsys, "compare", "220", "x26")
    assert status == 2 and out == "" and err.startswith("ftpdiag: error: ")


# -- codes -------------------------------------------------------------------------------------


def test_codes_text(capsys: pytest.CaptureFixture[str]) -> None:
    """The table lists every code with class and title, marking non-standard codes."""
    en = load_catalog("en")
    status, out, _ = run(capsys, "codes")
    assert status == 0
    lines = out.splitlines()
    for code in en.codes():
        assert any(line.startswith(str(code)) for line in lines), code
    assert any(line.startswith("10054*") for line in lines)
    assert "* Non-standard (Winsock error)" in out
    assert_fits(out)


def test_codes_filters(capsys: pytest.CaptureFixture[str]) -> None:
    """--class and --group filter by first and second digit."""
    status, out, _ = run(capsys, "codes", "--class", "4", "--format", "json")
    assert status == 0
    codes = {item["code"] for item in json.loads(out)}
    assert codes == {421, 425, 426, 430, 431, 434, 450, 451, 452}
    status, out, _ = run(capsys, "codes", "--class", "5", "--group", "5", "--format", "json")
    assert {item["code"] for item in json.loads(out)} == {550, 551, 552, 553, 554, 555}
    status, out, _ = run(capsys, "codes", "--group", "2")
    assert status == 0
    assert "426" in out and "550" not in out and "10054" not in out


def test_codes_json(capsys: pytest.CaptureFixture[str]) -> None:
    """JSON code list entries have stable keys and standard markers."""
    status, out, _ = run(capsys, "codes", "--format", "json")
    assert status == 0
    data = json.loads(out)
    assert list(data[0]) == ["code", "class", "group", "title", "severity", "standard", "variants"]
    by_code = {item["code"]: item for item in data}
    assert by_code[10061]["standard"] is False and by_code[220]["standard"] is True
    assert by_code[220]["variants"] == ["greeting", "after-host"]


@pytest.mark.parametrize("lang", LANGUAGES)
def test_codes_fits_in_every_language(capsys: pytest.CaptureFixture[str], lang: str) -> None:
    """The code table fits 100 columns in both languages."""
    status, out, _ = run(capsys, "codes", "--lang", lang)
    assert status == 0
    assert_fits(out)


def test_parse_code_accepts_long_codes() -> None:
    """parse_code accepts 3+ digit codes and rejects the rest."""
    assert knowledge_cli.parse_code("10054") == 10054
    with pytest.raises(knowledge_cli.UsageError):
        knowledge_cli.parse_code("99")
