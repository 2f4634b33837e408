"""Vietnamese all the way through: parity of the rule texts, labels and catalog between the
languages, Vietnamese output without untranslated English, and ``--lang`` on every command."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Iterator
from importlib import resources
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from ftpdiag import cli, i18n
from ftpdiag.console import ConsoleRenderer
from ftpdiag.rules import engine
from ftpdiag.rules.catalog import load_catalog
from ftpdiag.rules.engine import RULE_FILES, Diagnoser, rule_texts, value_words
from ftpdiag.rules.finding import Finding

_PLACEHOLDER = re.compile(r"\{([a-z_]+)(?:![rs])?\}")
_OPTIONAL = re.compile(r"\[[^\[\]]*\]")
_QUOTED = re.compile(r"'[^']*'|“[^”]*”|\"[^\"]*\"")
_VIETNAMESE = re.compile(r"[ăâđêôơưàáảãạèéẻẽẹìíỉĩịòóỏõọùúủũụỳýỷỹỵ]", re.IGNORECASE)
# English words that no Vietnamese syllable spells: one of them outside quotes (product
# settings such as FileZilla 'Use the following IP' are quoted) means English prose was left.
ENGLISH = frozenset(
    {
        "the",
        "and",
        "of",
        "is",
        "are",
        "was",
        "were",
        "with",
        "from",
        "this",
        "that",
        "not",
        "for",
        "by",
        "its",
        "has",
        "have",
        "will",
        "must",
        "when",
        "which",
        "what",
        "does",
        "did",
        "into",
        "only",
        "also",
        "after",
        "before",
        "there",
        "their",
        "your",
        "you",
        "should",
        "would",
        "could",
        "been",
        "being",
        "because",
        "while",
        "until",
        "unless",
    }
)
# Words a Vietnamese network administrator reads as they are: the program's name, FTP verbs,
# and loanwords of the trade.
TECHNICAL = frozenset({"ftpdiag", "TYPE", "REST", "timeout"})
# A code for each rule that borrows prose from the catalog (no text of its own).
CATALOG_CODES = {
    "reply.explained": 550,
    "data.cannot_open_active": 425,
    "data.cannot_open_passive": 425,
    "transfer.storage": 452,
    "file.permission": 550,
    "file.not_found": 550,
}
# Evidence as the checks produce it: fixed values as logged, and technical free text.
SAMPLES: dict[str, Any] = {
    "side": "server",
    "channel": "data",
    "kind": "refused",
    "client_end": "eof",
    "server_end": "reset",
    "clean": False,
    "prot_p": True,
    "outcome": "closed",
    "reason": "wrong host name",
    "detail": "ECONNREFUSED",
    "text": "PASV",
    "command": "RETR",
    "verb": "PORT",
    "awaiting": "LIST",
    "path": "big.bin",
    "user": "anonymous",
    "arg": "10,0,0,1,4,1",
    "error": "ValueError",
    "head": "AAAA",
    "allowed": "226, 250, 425, 426, 451, 550",
}


@pytest.fixture(autouse=True)
def _english_afterwards() -> Iterator[None]:
    """A test that ran ``ftpdiag --lang vi`` leaves the process's current language English."""
    yield


def _rule_file(lang: str) -> dict[str, Any]:
    text = resources.files("ftpdiag.rules").joinpath(RULE_FILES[lang]).read_text("utf-8")
    return tomllib.loads(text)


def _placeholders(template: str) -> tuple[set[str], set[str]]:
    """(every placeholder, the placeholders inside [optional] parts) of a template."""
    optional = {n for part in _OPTIONAL.findall(template) for n in _PLACEHOLDER.findall(part)}
    return set(_PLACEHOLDER.findall(template)), optional


def english_left(text: str) -> list[str]:
    """The English function words of ``text`` outside quotes (empty for clean Vietnamese)."""
    tokens = (t.strip(".:!?") for t in re.split(r"[\s(),;]+", _QUOTED.sub(" ", text)))
    return [t for t in tokens if t.isascii() and t.isalpha() and t.lower() in ENGLISH]


# -- parity ------------------------------------------------------------------------------------


def test_rule_files_have_the_same_rules_and_fields() -> None:
    """diagnoses_vi.toml has exactly the rule ids of diagnoses.toml and the same prose fields;
    severity and priority stay in the English source only."""
    en, vi = _rule_file("en")["rule"], _rule_file("vi")["rule"]
    assert set(en) - set(vi) == set(), "rules to translate in diagnoses_vi.toml"
    assert set(vi) - set(en) == set(), "rules of diagnoses_vi.toml that diagnoses.toml lacks"
    for rid, spec in en.items():
        prose = {k for k in ("title", "explanation", "remedy") if spec.get(k)}
        assert {k for k in vi[rid] if k != "phrases"} == prose, rid
        assert all(vi[rid][k].strip() for k in prose), rid
        assert {k: set(v) for k, v in vi[rid].get("phrases", {}).items()} == {
            k: set(v) for k, v in spec.get("phrases", {}).items()
        }, rid


@pytest.mark.parametrize("rule", sorted(rule_texts()))
def test_rule_placeholders_match(rule: str) -> None:
    """Each translated text uses the same placeholders, the same ones optional."""
    en, vi = rule_texts("en")[rule], rule_texts("vi")[rule]
    for field in ("title", "explanation", "remedy"):
        assert _placeholders(getattr(vi, field)) == _placeholders(getattr(en, field)), field
    for name, words in en.phrases.items():
        for key, english in words.items():
            assert _placeholders(vi.phrases[name][key]) == _placeholders(english), (name, key)


def test_value_words_cover_only_logged_fields() -> None:
    """[values] tables translate evidence fields that the rule texts actually show."""
    shown = {
        name
        for text in rule_texts("en").values()
        for template in (text.title, text.explanation, text.remedy)
        for name in _PLACEHOLDER.findall(template)
    }
    assert set(value_words("vi")) <= shown
    assert value_words("en") == {}


def test_labels_have_the_same_keys_and_fields() -> None:
    """Every label exists in both languages with the same {fields}."""
    en, vi = i18n.labels("en"), i18n.labels("vi")
    assert set(en) == set(vi)
    for key, text in en.items():
        assert set(_PLACEHOLDER.findall(vi[key])) == set(_PLACEHOLDER.findall(text)), key


def test_catalog_parity_of_texts() -> None:
    """Both catalogs explain every code (and variant) with non-empty prose and, in Vietnamese,
    no English sentence left."""
    en, vi = load_catalog("en"), load_catalog("vi")
    assert en.codes() == vi.codes()
    for code in vi.codes():
        for key, after, state, text in [(None, (), (), ""), *vi.variant_conditions(code)]:
            exp = vi.explain(
                code,
                after=after[0] if after else None,
                state=frozenset(state),
                text=text.split("|")[0],
            )
            for field in ("title", "description", "when", "remedy"):
                value = getattr(exp, field)
                assert value.strip(), (code, key, field)
                assert not english_left(value), (code, key, field, english_left(value))


# -- Vietnamese output -------------------------------------------------------------------------


def _render(rule: str, lang: str) -> dict[str, Any]:
    text = rule_texts("en")[rule]
    evidence: dict[str, Any] = {}
    for template in (text.title, text.explanation, text.remedy):
        for name in _PLACEHOLDER.findall(template):
            evidence[name] = SAMPLES.get(name, 4096)
    for name, words in text.phrases.items():
        evidence[name] = next(iter(words))
    code = CATALOG_CODES.get(rule, 550)
    fields = {"code": code, "command": "RETR"}
    return Diagnoser(lang).render(Finding(rule, code, evidence), fields)


@pytest.mark.parametrize("rule", sorted(rule_texts()))
def test_every_rule_renders_in_vietnamese_without_english(rule: str) -> None:
    """Rendered with sample evidence, a rule's Vietnamese title, explanation and remedy are
    Vietnamese (diacritics present, no English function word), and differ from English."""
    en, vi = _render(rule, "en"), _render(rule, "vi")
    for field in ("title", "explanation", "remedy"):
        assert vi[field] and "{" not in vi[field], (rule, field)
        assert _VIETNAMESE.search(vi[field]), (rule, field, vi[field])
        assert not english_left(vi[field]), (rule, field, english_left(vi[field]))
        assert vi[field] != en[field], (rule, field)
    assert (vi["rule"], vi["severity"], vi["code"]) == (en["rule"], en["severity"], en["code"])


def test_json_record_keeps_ids_and_evidence_in_english() -> None:
    """A Vietnamese diagnosis keeps its rule id and logged evidence values; only prose changes."""
    record = _render("tls.version_mismatch", "vi")
    assert record["rule"] == "tls.version_mismatch"
    assert record["evidence"]["side"] == "server" and record["evidence"]["channel"] == "data"
    assert "máy chủ" in record["title"] and "dữ liệu" in record["title"]


def test_rule_missing_in_translation_falls_back_to_english(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A text absent from a translation reads in English, field by field, never empty."""
    real = engine.resources.files("ftpdiag.rules")
    partial = tmp_path / "rules"
    partial.mkdir()
    (partial / "diagnoses.toml").write_bytes(real.joinpath("diagnoses.toml").read_bytes())
    (partial / "diagnoses_vi.toml").write_text(
        '[rule."login.ok"]\ntitle = "Đã đăng nhập"\n', encoding="utf-8"
    )
    monkeypatch.setattr(engine, "resources", SimpleNamespace(files=lambda _package: partial))
    engine.rule_texts.cache_clear()
    try:
        text, english = engine.rule_texts("vi")["login.ok"], engine.rule_texts("en")["login.ok"]
        assert text.title == "Đã đăng nhập" and text.explanation == english.explanation
        assert engine.rule_texts("vi")["login.failed"] == engine.rule_texts("en")["login.failed"]
    finally:
        engine.rule_texts.cache_clear()


def test_language_without_a_file_reads_english() -> None:
    """A language without a rule file gets the English texts throughout."""
    assert rule_texts("xx") == rule_texts("en")


# A recorded session: greeting, login, a transfer cut by 426, the close and its summary.
SESSION: list[dict[str, Any]] = [
    {
        "event": "proxy.listen",
        "listen": "127.0.0.1:2121",
        "upstream": "127.0.0.1:21",
        "sandbox": True,
        "user": "diag",
        "sandbox_password": "diag",
        "anonymous": True,
        "try_cmd": "curl ftp://diag:diag@127.0.0.1:2121/README.txt",
    },
    {
        "event": "session.open",
        "client": "127.0.0.1:5000",
        "upstream": "127.0.0.1:21",
        "upstream_mode": "same",
    },
    {
        "event": "reply",
        "code": 220,
        "text": "ready",
        "command": None,
        "latency_ms": 1.0,
        "state": ["greeting"],
    },
    {"event": "command", "verb": "USER", "arg": "diag"},
    {"event": "reply", "code": 331, "text": "ok", "command": "USER", "latency_ms": 0.3},
    {"event": "command", "verb": "PASS", "arg": "****"},
    {"event": "reply", "code": 230, "text": "ok", "command": "PASS", "latency_ms": 0.3},
    {
        "event": "transfer.start",
        "pipe": 1,
        "command": "RETR",
        "path": "big.bin",
        "direction": "download",
        "mode": {"client": "passive", "server": "passive"},
        "type": "I",
        "rest": None,
    },
    {
        "event": "reply",
        "code": 426,
        "text": "aborted",
        "command": "RETR",
        "latency_ms": 2.0,
        "state": ["logged_in", "passive", "transfer"],
    },
    {
        "event": "transfer.end",
        "pipe": 1,
        "command": "RETR",
        "path": "big.bin",
        "direction": "download",
        "mode": {"client": "passive", "server": "passive"},
        "type": "I",
        "rest": None,
        "bytes": 1048576,
        "duration_ms": 2.0,
        "rate_mbps": 4000.0,
        "outcome": 426,
        "client_end": "eof",
        "server_end": "eof",
        "first_closed": "server",
        "aborted_by": None,
    },
    {"event": "control.closed", "side": "server", "clean": True, "detail": None},
    {
        "event": "session.close",
        "reason": "server closed",
        "duration_ms": 50.0,
        "commands": 1,
        "replies": 4,
        "replies_by_class": {},
        "transfers": 1,
        "bytes": 1048576,
    },
]


def _console(lang: str) -> str:
    render = ConsoleRenderer(color=False, verbose=True, lang=lang)
    engine = Diagnoser(lang)
    lines = []
    for record in SESSION:
        fields = {k: v for k, v in record.items() if k != "event"}
        for event, produced in engine.process(str(record["event"]), fields):
            lines.append(render({"event": event, "timestamp": "2026-12-07T23:00:00Z", **produced}))
    return "\n".join(line for line in lines if line)


def _english_fragments() -> set[str]:
    """The words of the English console labels (their text outside {fields}) that the
    Vietnamese labels do not share."""
    vi = i18n.labels("vi")

    def words(text: str) -> set[str]:
        return set(re.findall(r"[A-Za-z]{4,}", _PLACEHOLDER.sub(" ", text)))

    fragments: set[str] = set()
    for key, text in i18n.labels("en").items():
        if key.split(".")[0] in ("console", "side", "mode", "severity", "reason", "words"):
            fragments |= words(text) - words(vi[key])  # what both say (curl, CIDR) is technical
    return fragments - TECHNICAL


def _label_words(lines: list[str]) -> set[str]:
    """The words of rendered lines; rule ids (``reply.explained``), URLs and options left out."""
    text = re.sub(r"\S*[a-z]\.[a-z]\S*|--[\w-]+", " ", "\n".join(lines))
    return set(re.findall(r"[A-Za-z]{4,}", text))


def test_console_in_vietnamese_has_no_english_label() -> None:
    """The console rendering of a whole session in Vietnamese contains no English label word
    outside the server's own reply lines and the commands."""
    text = _console("vi")
    ours = [line for line in text.splitlines() if "← " not in line and "→ " not in line[:25]]
    words = _label_words(ours)
    assert words & _english_fragments() == set(), words & _english_fragments()
    for expected in ("mở phiên", "đóng phiên", "Cách khắc phục:", "Nguyên nhân nhiều khả năng"):
        assert expected in text, expected
    assert "1 lệnh" in text and "máy chủ đóng kết nối" in text


def test_console_in_english_is_unchanged() -> None:
    """English keeps its labels, with the singular for a count of one."""
    text = _console("en")
    assert "⇄ session open   client 127.0.0.1:5000 → upstream 127.0.0.1:21" in text
    assert "session closed  0.1 s · 1 command · 1 transfer (1.0 MiB) · server closed" in text
    assert "Fix: Retry and resume" in text and "Most likely cause: Transfer aborted" in text


@pytest.mark.timeout(60)
def test_demo_in_vietnamese() -> None:
    """``ftpdiag demo --lang vi`` diagnoses the 426 in Vietnamese with no English label."""
    done = subprocess.run(
        [sys.executable, "-m", "ftpdiag", "demo", "--lang", "vi"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "✓ Dịch vụ sẵn sàng cho người dùng mới" in out
    assert "✗ Truyền bị hủy (426): RETR big.bin sau 1048576 byte trên 8388608 (12.5 %)" in out
    assert "Cách khắc phục: Thử lại" in out and "REST 1048576" in out
    ours = [line for line in out.splitlines() if "← " not in line and "→ " not in line[:25]]
    words = _label_words(ours)
    assert words & _english_fragments() == set(), words & _english_fragments()
    assert not english_left("\n".join(ours)), english_left("\n".join(ours))


# -- the command line --------------------------------------------------------------------------


def _subcommands() -> dict[str, Any]:
    parser = cli.build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return dict(action.choices)


def test_every_command_has_lang() -> None:
    """Every subcommand takes --lang en|vi, defaulting to the locale (None until resolved)."""
    for name, sub in _subcommands().items():
        option = next((a for a in sub._actions if "--lang" in a.option_strings), None)
        assert option is not None, name
        assert tuple(option.choices) == i18n.LANGUAGES and option.default is None, name


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({"LC_ALL": "vi_VN.UTF-8"}, "vi"),
        ({"LC_MESSAGES": "vi_VN.UTF-8", "LANG": "en_US.UTF-8"}, "vi"),
        ({"LANG": "vi_VN.UTF-8"}, "vi"),
        ({"LC_ALL": "en_US.UTF-8", "LANG": "vi_VN.UTF-8"}, "en"),
        ({}, "en"),
    ],
)
def test_locale_decides_without_lang(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    environ: dict[str, str],
    expected: str,
) -> None:
    """Without --lang, LC_ALL then LC_MESSAGES then LANG choose the language."""
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["explain", "220", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["lang"] == expected


def test_errors_and_help_in_vietnamese(capsys: pytest.CaptureFixture[str]) -> None:
    """ftpdiag's own errors and its help texts follow --lang."""
    assert cli.main(["explain", "abc", "--lang", "vi"]) == 2
    assert "ftpdiag: lỗi: mã phản hồi không hợp lệ 'abc'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        cli.main(["proxy", "--listen", "[::1", "--lang", "vi"])
    assert exited.value.code == 2
    assert (
        "ftpdiag: lỗi: tham số --listen: '[::1': thiếu ']' sau địa chỉ IPv6"
        in capsys.readouterr().err
    )
    with pytest.raises(SystemExit):
        cli.main(["proxy", "--help", "--lang", "vi"])
    help_text = capsys.readouterr().out
    assert "Chạy proxy chẩn đoán." in help_text and "nơi máy khách kết nối tới" in help_text
    assert help_text.startswith("cách dùng: ftpdiag proxy") and "tùy chọn:" in help_text
    assert "hiện trợ giúp này rồi thoát" in help_text and "show this help" not in help_text


def test_errors_in_english_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    """With --lang en the same error reads in English."""
    assert cli.main(["explain", "abc", "--lang", "en"]) == 2
    assert "ftpdiag: error: invalid reply code 'abc'" in capsys.readouterr().err


def test_lang_before_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    """``ftpdiag --lang vi explain 220`` works like ``ftpdiag explain 220 --lang vi``."""
    assert cli.main(["--lang", "vi", "explain", "220", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["lang"] == "vi"


def test_lang_from_argv() -> None:
    """--lang is found before argparse runs, in both spellings; bad values are ignored."""
    assert i18n.lang_from_argv(["demo", "--lang", "vi"]) == "vi"
    assert i18n.lang_from_argv(["demo", "--lang=vi"]) == "vi"
    assert i18n.lang_from_argv(["demo", "--lang", "fr"]) is None
    assert i18n.lang_from_argv(["demo"]) is None


PROXY_WIDE: list[dict[str, Any]] = [
    {"event": "tls.ca", "ca": "cfg/ca.pem", "created": True, "hint": "…"},
    {"event": "tls.ca", "ca": "cfg/ca.pem", "created": False, "hint": "…"},
    {"event": "proxy.exposed", "listen": "0.0.0.0:2121", "hint": "…"},
    {"event": "access.refused", "client": "10.1.2.3:4000",
     "reason": "client 10.1.2.3 is not allowed (see --allow-client)"},
    {"event": "access.refused", "client": "10.1.2.3:4000",
     "reason": "too many sessions from 10.1.2.3 (2, see --max-sessions-per-client)"},
    {"event": "tls.insecure", "upstream": "127.0.0.1"},
    {"event": "proxy.internal_error", "session": "ab12", "error": "KeyError", "message": "'x'",
     "where": "ftpdiag.proxy.control:9 in feed"},
]  # fmt: skip


@pytest.mark.parametrize("record", PROXY_WIDE, ids=lambda r: str(r["event"]))
def test_proxy_wide_records_in_vietnamese(record: dict[str, Any]) -> None:
    """The console forms of proxy-wide records (and the refusal reasons the proxy logs in
    English) read in Vietnamese, with no English label word."""
    text = ConsoleRenderer(color=False, lang="vi")(dict(record))
    assert _VIETNAMESE.search(text), text
    assert _label_words([text]) & _english_fragments() == set(), text
    assert not english_left(text), english_left(text)


def test_unknown_refusal_reason_stays_as_logged() -> None:
    """A reason no template knows is shown as the proxy logged it rather than dropped."""
    assert i18n.reword("refusal", "some new reason", "vi") == "some new reason"
    assert i18n.reword("refusal", "too many sessions (3, see --max-sessions)", "vi") == (
        "quá nhiều phiên (3, xem --max-sessions)"
    )


def test_logged_values_with_fields_are_said_in_vietnamese() -> None:
    """A logged value made from a template (``AUTH {arg} accepted …``) reads in Vietnamese
    with its fields carried over; the record's evidence keeps the logged text."""
    reason = "AUTH TLS accepted (234): only ciphertext from here on"
    record = Diagnoser("vi").render(Finding("tls.blind", None, {"reason": reason}), {})
    assert record["title"].endswith("AUTH TLS được chấp nhận (234): từ đây chỉ còn dữ liệu mã hóa")
    assert record["evidence"]["reason"] == reason


def _messages(path: Path, where: Callable[[ast.AST], bool]) -> list[str]:
    """The string (or f-string, fields as 7) messages of the nodes ``where`` selects."""
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"))):
        if not where(node):
            continue
        inside = {id(p) for j in ast.walk(node) if isinstance(j, ast.JoinedStr) for p in j.values}
        for value in ast.walk(node):
            if id(value) in inside:
                continue
            if isinstance(value, ast.JoinedStr):
                found.append(
                    "".join(
                        str(part.value) if isinstance(part, ast.Constant) else "7"
                        for part in value.values
                    )
                )
            elif isinstance(value, ast.Constant) and isinstance(value.value, str):
                found.append(value.value)
    return found


def test_messages_of_other_modules_have_vietnamese_words() -> None:
    """Every packet-capture error and every access refusal reason (written in English by their
    modules) matches a template of the labels, so the console says it in Vietnamese."""
    package = Path(cli.__file__).parent

    def raises_capture_error(node: ast.AST) -> bool:
        return (
            isinstance(node, ast.Raise)
            and isinstance(node.exc, ast.Call)
            and getattr(node.exc.func, "id", None) == "CaptureError"
        )

    def refusal_return(node: ast.AST) -> bool:
        return isinstance(node, ast.FunctionDef) and node.name == "refusal"

    capture = _messages(package / "capture" / "pcap.py", raises_capture_error)
    refusals = [
        m
        for m in _messages(package / "proxy" / "access.py", refusal_return)
        if " " in m and not m.startswith("Why")
    ]
    assert capture and refusals
    for section, messages in (("capture", capture), ("refusal", refusals)):
        for message in messages:
            assert i18n.reword(section, message, "vi") != message, (section, message)


def test_report_and_analyze_errors_in_vietnamese(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``report`` and ``analyze`` say a missing input in the chosen language."""
    missing = str(tmp_path / "missing.jsonl")
    assert cli.main(["report", missing, "-o", str(tmp_path / "r.html"), "--lang", "vi"]) == 2
    assert f"ftpdiag: lỗi: không đọc được {missing}: " in capsys.readouterr().err
    assert cli.main(["analyze", missing, "--lang", "vi"]) == 2
    assert f"ftpdiag: lỗi: không đọc được {missing}: " in capsys.readouterr().err
    assert cli.main(["analyze", missing, "--lang", "en"]) == 2
    assert f"ftpdiag: error: cannot read {missing}: " in capsys.readouterr().err
