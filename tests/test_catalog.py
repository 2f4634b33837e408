"""Tests for the reply-code catalog: schema, coverage, parity, validation and matching."""

from __future__ import annotations

import dataclasses
import re
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from ftpdiag.rules.catalog import (
    HEADING_KEYS,
    LANGUAGES,
    STATE_TAGS,
    Catalog,
    CatalogError,
    Explanation,
    default_lang,
    load_catalog,
    load_catalog_file,
)

# Every standard reply code and the RFC that defines it (docs/catalog.md, "Codes").
RFC_CODES: dict[int, str] = {
    **dict.fromkeys(
        (110, 120, 125, 150, 200, 202, 211, 212, 213, 214, 215, 220, 221, 225, 226, 227, 230,
         250, 257, 331, 332, 350, 421, 425, 426, 450, 451, 452, 500, 501, 502, 503, 504, 530,
         532, 550, 551, 552, 553),
        "RFC 959",
    ),
    **dict.fromkeys(
        (232, 234, 235, 334, 335, 336, 431, 533, 534, 535, 536, 537, 631, 632, 633), "RFC 2228"
    ),
    229: "RFC 2428",
    522: "RFC 2428",
    228: "RFC 1639",
    521: "RFC 1639",
    554: "RFC 1123",
}
# Codes on the public lists of FTP return codes that no RFC defines (standard = false).
UNLISTED_CODES: tuple[int, ...] = (231, 430, 434, 555)
# IIS / Winsock errors relayed as replies (standard = false).
WINSOCK_CODES: tuple[int, ...] = (
    10013, 10048, 10049, 10050, 10051, 10052, 10053, 10054, 10055, 10056, 10057, 10058, 10059,
    10060, 10061, 10062, 10063, 10064, 10065, 10066, 10067, 10068, 11001,
)
NONSTANDARD_CODES: tuple[int, ...] = (*UNLISTED_CODES, *WINSOCK_CODES)

# (code, key, after, state, text) in file order, exactly as docs/catalog.md lists them.
VARIANTS: list[tuple[int, str, tuple[str, ...], tuple[str, ...], str]] = [
    (120, "greeting", (), ("greeting",), ""),
    (150, "after-mlsd", ("MLSD",), (), ""),
    (200, "after-prot", ("PROT", "PBSZ"), (), ""),
    (213, "after-size", ("SIZE",), (), ""),
    (213, "after-mdtm", ("MDTM",), (), ""),
    (220, "greeting", (), ("greeting",), ""),
    (220, "after-host", ("HOST",), (), ""),
    (226, "after-abort", (), ("abort",), ""),
    (250, "after-mlst", ("MLST",), (), ""),
    (350, "after-rest", ("REST",), (), ""),
    (350, "after-rnfr", ("RNFR",), (), ""),
    (421, "greeting", (), ("greeting",), ""),
    (421, "too-many", (), (), "too many|maximum|limit|per ip|connections from"),
    (421, "idle-timeout", (), ("logged_in",), "timeout|idle|too long"),
    (421, "transfer", (), ("transfer",), ""),
    (425, "passive", (), ("passive",), ""),
    (425, "active", (), ("active",), ""),
    (425, "prot-p", (), ("prot_p",), ""),
    (425, "tls-reuse", (), ("prot_p",), "reuse|resum"),
    (426, "after-abort", (), ("abort",), ""),
    (426, "prot-p", (), ("prot_p",), ""),
    (451, "after-stor", ("STOR", "APPE", "STOU"), (), ""),
    (452, "after-stor", ("STOR", "APPE", "STOU"), (), ""),
    (500, "after-epsv", ("EPSV",), (), ""),
    (500, "after-eprt", ("EPRT",), (), ""),
    (500, "after-auth", ("AUTH",), (), ""),
    (500, "after-mlsd", ("MLSD", "MLST"), (), ""),
    (500, "after-size", ("SIZE",), (), ""),
    (500, "illegal-port", ("PORT", "EPRT"), (), "illegal|not allowed|refused|bounce|foreign"),
    (501, "after-port", ("PORT", "EPRT"), (), ""),
    (502, "after-epsv", ("EPSV",), (), ""),
    (502, "after-eprt", ("EPRT",), (), ""),
    (502, "after-auth", ("AUTH",), (), ""),
    (502, "after-mlsd", ("MLSD", "MLST"), (), ""),
    (502, "after-size", ("SIZE",), (), ""),
    (504, "after-auth", ("AUTH",), (), ""),
    (504, "after-host", ("HOST",), (), ""),
    (521, "after-lprt", ("LPRT", "LPSV"), (), ""),
    (521, "after-mkd", ("MKD",), (), ""),
    (521, "after-prot", ("PROT",), (), ""),
    (522, "tls-required", (), (), "ssl|tls|encrypt"),
    (522, "tls-reuse", (), (), "reuse|resum"),
    (530, "after-pass", ("PASS",), (), ""),
    (530, "after-user", ("USER",), (), ""),
    (530, "tls-required", (), (), "ssl|tls|encrypt|secure"),
    (530, "too-many", (), (), "too many|maximum|limit"),
    (534, "after-auth", ("AUTH",), (), ""),
    (534, "tls-required", (), (), "ssl|tls|encrypt|secure|policy"),
    (550, "after-retr", ("RETR",), (), ""),
    (550, "after-stor", ("STOR", "APPE", "STOU"), (), ""),
    (550, "after-cwd", ("CWD", "CDUP"), (), ""),
    (550, "after-mkd", ("MKD",), (), ""),
    (550, "after-dele", ("DELE", "RMD"), (), ""),
    (550, "after-rnfr", ("RNFR",), (), ""),
    (550, "tls-required", (), (), "ssl|tls|encrypt|secure"),
    (552, "after-stor", ("STOR", "APPE", "STOU"), (), ""),
    (553, "after-stor", ("STOR", "APPE", "STOU"), (), ""),
]

REFERENCE_RE = re.compile(r"RFC \d{3,4}( §\d+(\.\d+)*)?")


def _raw(lang: str) -> dict[str, Any]:
    data = resources.files("ftpdiag.rules").joinpath("catalog").joinpath(f"{lang}.toml")
    return tomllib.loads(data.read_text("utf-8"))


def _key_tree(value: object) -> object:
    if isinstance(value, dict):
        return {key: _key_tree(sub) for key, sub in value.items()}
    return None


@pytest.fixture
def en() -> Catalog:
    """The packaged English catalog."""
    return load_catalog("en")


# -- schema and coverage -----------------------------------------------------------------------


@pytest.mark.parametrize("lang", LANGUAGES)
def test_packaged_catalog_validates(lang: str) -> None:
    """Each packaged language file loads, passes validation and declares its own language."""
    catalog = load_catalog(lang)
    assert catalog.lang == lang
    assert set(catalog.headings) == set(HEADING_KEYS)
    assert all(value.strip() for value in catalog.headings.values())


@pytest.mark.parametrize("lang", LANGUAGES)
def test_every_rfc_code_is_covered(lang: str) -> None:
    """The catalog holds exactly the RFC codes plus the documented Winsock codes."""
    catalog = load_catalog(lang)
    assert catalog.codes() == sorted([*RFC_CODES, *NONSTANDARD_CODES])


@pytest.mark.parametrize("lang", LANGUAGES)
def test_standard_flags(lang: str) -> None:
    """RFC codes are standard and Winsock codes are not."""
    catalog = load_catalog(lang)
    for code in RFC_CODES:
        assert catalog.explain(code).standard, code
    for code in NONSTANDARD_CODES:
        assert not catalog.explain(code).standard, code


def test_defining_rfc_is_cited(en: Catalog) -> None:
    """Every standard code cites the RFC that defines it, in the documented reference format."""
    for code, rfc in RFC_CODES.items():
        refs = en.explain(code).references
        assert any(ref == rfc or ref.startswith(rfc + " §") for ref in refs), (code, refs)
        assert all(REFERENCE_RE.fullmatch(ref) for ref in refs), (code, refs)


@pytest.mark.parametrize("lang", LANGUAGES)
def test_variants_match_documentation(lang: str) -> None:
    """Variant keys and conditions are exactly the documented ones, in the documented order."""
    catalog = load_catalog(lang)
    actual = [
        (code, key, after, state, text)
        for code in catalog.codes()
        for key, after, state, text in catalog.variant_conditions(code)
    ]
    expected = [
        (code, key, tuple(sorted(after)), tuple(sorted(state)), text)
        for code, key, after, state, text in VARIANTS
    ]
    assert actual == expected


def test_english_prose_is_plain_text(en: Catalog) -> None:
    """English prose has no markdown and every field of every entry and variant is filled."""
    for code in en.codes():
        for key in [None, *en.variants(code)]:
            exp = _explain_variant(en, code, key)
            for field in ("title", "description", "when", "remedy"):
                text = getattr(exp, field)
                assert text.strip(), (code, key, field)
                assert not re.search(r"\*\*|`|^#|\]\(", text), (code, key, field)


def test_seed_codes_are_thorough(en: Catalog) -> None:
    """220 and 426, the seed comparison, name their class and real server behaviour."""
    greeting = en.explain(220)
    aborted = en.explain(426)
    assert "Positive Completion" in greeting.description
    assert "Transient Negative" in aborted.description
    assert "vsftpd" in aborted.when and "ABOR" in aborted.when
    assert "UseReverseDNS" in greeting.remedy
    assert greeting.severity == "info" and aborted.severity == "error"


# -- parity ------------------------------------------------------------------------------------


def test_parity_codes_and_variants() -> None:
    """English and Vietnamese cover the same codes and variants with identical conditions."""
    en, vi = load_catalog("en"), load_catalog("vi")
    assert en.codes() == vi.codes()
    for code in en.codes():
        assert en.variant_conditions(code) == vi.variant_conditions(code), code
        assert en.explain(code).standard == vi.explain(code).standard, code


def test_parity_meta_keys() -> None:
    """Both languages define the same [meta] tables and keys."""
    assert _key_tree(_raw("en")["meta"]) == _key_tree(_raw("vi")["meta"])


def test_parity_severity() -> None:
    """Severity (base and variants) is language-independent: only the prose differs."""
    en, vi = load_catalog("en"), load_catalog("vi")
    mismatches = [
        (code, key, a.severity, b.severity)
        for code in en.codes()
        for key in [None, *en.variants(code)]
        for a, b in [(_explain_variant(en, code, key), _explain_variant(vi, code, key))]
        if a.severity != b.severity
    ]
    assert mismatches == []


def test_parity_references() -> None:
    """References are language-independent: only the prose differs."""
    en, vi = load_catalog("en"), load_catalog("vi")
    mismatches = [
        (code, en.explain(code).references, vi.explain(code).references)
        for code in en.codes()
        if en.explain(code).references != vi.explain(code).references
    ]
    assert mismatches == []


def _explain_variant(catalog: Catalog, code: int, key: str | None) -> Explanation:
    """Explain ``code`` with conditions chosen to select the variant ``key``."""
    if key is None:
        return catalog.explain(code)
    for vkey, after, state, text in catalog.variant_conditions(code):
        if vkey == key:
            sample = text.split("|")[0] if text else ""
            exp = catalog.explain(
                code, after=after[0] if after else None, state=frozenset(state), text=sample
            )
            assert exp.variant == key, (code, key, exp.variant)
            return exp
    raise AssertionError(f"no variant {key} for {code}")


# -- validation --------------------------------------------------------------------------------

VALID = """
[meta]
lang = "en"
[meta.headings]
class = "Class"
description = "Description"
when = "When"
remedy = "Remedy"
differences = "Differences"
which = "Which"
references = "References"
next = "Next"
tells = "Tells"
[meta.classes]
"1" = "P1"
"2" = "P2"
"3" = "P3"
"4" = "T4"
"5" = "N5"
"6" = "S6"
[meta.class_tells]
"1" = "t1"
"2" = "t2"
"3" = "t3"
"4" = "t4"
"5" = "t5"
"6" = "t6"
[meta.class_next]
"1" = "n1"
"2" = "n2"
"3" = "n3"
"4" = "n4"
"5" = "n5"
"6" = "n6"
[meta.groups]
"0" = "Syntax"
"1" = "Information"
"2" = "Connections"
"3" = "Auth"
"5" = "Files"
[meta.nonstandard]
title = "Non-standard"
[meta.generic]
title = "Unknown {code}"
description = "A {class} reply in group {group}."
when = "Rarely."
remedy = "Read the text."

[[code]]
code = 425
title = "Base"
severity = "error"
standard = true
references = ["RFC 959 §4.2.1"]
description = "Base description."
when = "Base when."
remedy = "Base remedy."

  [[code.variant]]
  key = "by-after"
  after = ["RETR"]
  title = "After"

  [[code.variant]]
  key = "by-state"
  state = ["passive"]
  title = "State"

  [[code.variant]]
  key = "by-after-state"
  after = ["RETR"]
  state = ["passive"]
  title = "After+state"

  [[code.variant]]
  key = "by-text"
  text = "reuse"
  title = "Text"
  severity = "warning"

  [[code.variant]]
  key = "by-state-text"
  state = ["tls"]
  text = "reuse"
  title = "State+text"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "catalog.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_minimal_document_loads(tmp_path: Path) -> None:
    """The minimal fixture document is valid, so each broken variant below fails for one reason."""
    catalog = load_catalog_file(_write(tmp_path, VALID), "en")
    assert catalog.codes() == [425]
    assert catalog.variants(425) == [
        "by-after", "by-state", "by-after-state", "by-text", "by-state-text",
    ]


BROKEN: list[tuple[str, str, str, str]] = [
    # (id, old, new, expected fragment of the error)
    ("missing-field", 'remedy = "Base remedy."\n', "", "'remedy'"),
    ("bad-severity", 'severity = "error"', 'severity = "fatal"', "severity"),
    ("bad-standard", "standard = true", 'standard = "yes"', "standard"),
    ("bad-references", 'references = ["RFC 959 §4.2.1"]', 'references = "RFC 959"', "references"),
    ("code-not-int", "code = 425", 'code = "425"', "'code'"),
    ("code-too-small", "code = 425", "code = 42", "code 42"),
    ("standard-out-of-range", "code = 425", "code = 10054", "100..699"),
    ("unknown-field", 'title = "Base"', 'title = "Base"\ncolour = "red"', "colour"),
    ("lower-case-verb", 'after = ["RETR"]\n  title = "After"',
     'after = ["retr"]\n  title = "After"', "'retr'"),
    ("unknown-state", 'state = ["passive"]\n  title = "State"\n',
     'state = ["pasv"]\n  title = "State"\n', "'pasv'"),
    ("bad-regex", 'text = "reuse"\n  title = "Text"', 'text = "reuse("\n  title = "Text"',
     "invalid regex"),
    ("duplicate-variant", 'key = "by-state"', 'key = "by-after"', "duplicate key"),
    ("no-condition", 'after = ["RETR"]\n  title = "After"', 'title = "After"', "condition"),
    ("variant-bad-severity", 'severity = "warning"', 'severity = "loud"', "severity"),
    ("missing-heading", 'tells = "Tells"\n', "", "'tells'"),
    ("extra-class", '"6" = "S6"\n', '"6" = "S6"\n"7" = "X7"\n', "'7'"),
    ("bad-placeholder", 'title = "Unknown {code}"', 'title = "Unknown {number}"', "{number}"),
    ("lang-mismatch", 'lang = "en"', 'lang = "vi"', "lang"),
    ("invalid-toml", "[meta]\n", "[meta\n", "invalid TOML"),
    ("no-codes", "[[code]]\ncode = 425", "[[nocode]]\ncode = 425", "[[code]]"),
]


@pytest.mark.parametrize(
    ("old", "new", "fragment"), [case[1:] for case in BROKEN], ids=[case[0] for case in BROKEN]
)
def test_validator_rejects_broken_documents(
    tmp_path: Path, old: str, new: str, fragment: str
) -> None:
    """Each schema violation raises CatalogError naming the file and the offending field."""
    assert old in VALID
    path = _write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(CatalogError) as info:
        load_catalog_file(path, "en")
    assert fragment in str(info.value)
    assert str(path) in str(info.value)


def test_validator_rejects_duplicate_code(tmp_path: Path) -> None:
    """A code listed twice is rejected with the code in the message."""
    entry = VALID[VALID.index("[[code]]"):VALID.index("  [[code.variant]]")]
    path = _write(tmp_path, VALID + "\n" + entry)
    with pytest.raises(CatalogError, match="code 425: duplicate code"):
        load_catalog_file(path)


def test_nonstandard_code_outside_range_is_allowed(tmp_path: Path) -> None:
    """A 5-digit code is accepted when it is marked standard = false."""
    text = VALID.replace("code = 425", "code = 10054")
    text = text.replace("standard = true", "standard = false")
    catalog = load_catalog_file(_write(tmp_path, text))
    exp = catalog.explain(10054)
    assert exp.known and not exp.standard
    assert exp.reply_class == "Non-standard" and exp.group == ""


def test_missing_file_is_a_catalog_error(tmp_path: Path) -> None:
    """A missing catalog file raises CatalogError, not OSError."""
    with pytest.raises(CatalogError, match="cannot read"):
        load_catalog_file(tmp_path / "absent.toml")


def test_unknown_language_is_rejected() -> None:
    """load_catalog refuses languages other than en and vi."""
    with pytest.raises(CatalogError, match="unknown catalog language"):
        load_catalog("fr")


def test_load_catalog_is_cached() -> None:
    """Loading the same language twice returns the same object."""
    assert load_catalog("en") is load_catalog("en")


# -- matching ----------------------------------------------------------------------------------


@pytest.fixture
def mini(tmp_path: Path) -> Catalog:
    """The minimal fixture catalog with one code and five variants."""
    return load_catalog_file(_write(tmp_path, VALID))


def test_no_matching_variant_gives_base(mini: Catalog) -> None:
    """Without matching conditions the base entry is returned."""
    exp = mini.explain(425, after="STOR", state=frozenset({"tls"}), text="no")
    assert (exp.variant, exp.title, exp.severity) == (None, "Base", "error")


def test_most_specific_variant_wins(mini: Catalog) -> None:
    """after + state beats after alone and state alone."""
    exp = mini.explain(425, after="RETR", state=frozenset({"passive"}))
    assert exp.variant == "by-after-state"


def test_tie_goes_to_first_in_file(mini: Catalog) -> None:
    """Equally specific matches resolve to the variant listed first."""
    assert mini.explain(425, after="RETR", text="reuse").variant == "by-after"
    assert mini.explain(425, state=frozenset({"passive"}), text="reuse").variant == "by-state"


def test_text_regex_is_case_insensitive_search(mini: Catalog) -> None:
    """The text condition searches the reply text ignoring case."""
    exp = mini.explain(425, text="425 SSL session REUSE required")
    assert exp.variant == "by-text"
    assert exp.severity == "warning"
    assert exp.description == "Base description."


def test_state_tags_must_all_hold(mini: Catalog) -> None:
    """A variant with state and text needs both; with both it beats text alone."""
    assert mini.explain(425, state=frozenset({"tls"})).variant is None
    assert mini.explain(425, state=frozenset({"tls", "abort"}), text="reuse").variant == (
        "by-state-text"
    )


def test_after_is_normalized(mini: Catalog) -> None:
    """The answered command matches case-insensitively and may include its argument."""
    assert mini.explain(425, after="retr").variant == "by-after"
    assert mini.explain(425, after="RETR file.txt").variant == "by-after"
    assert mini.explain(425, after="").variant is None


def test_real_catalog_selection(en: Catalog) -> None:
    """The packaged variants resolve as documented for typical sessions."""
    prot_p = frozenset({"prot_p", "passive", "logged_in", "tls"})
    assert en.explain(425, state=prot_p, text="session reuse required").variant == "tls-reuse"
    assert en.explain(425, state=frozenset({"passive", "prot_p"})).variant == "passive"
    assert en.explain(426, state=frozenset({"abort", "prot_p"})).variant == "after-abort"
    assert en.explain(421, text="421 Timeout.").variant is None
    idle = en.explain(421, state=frozenset({"logged_in"}), text="421 Timeout.")
    assert idle.variant == "idle-timeout"
    assert en.explain(421, text="There are too many connected users").variant == "too-many"
    assert en.explain(550, after="APPE").variant == "after-stor"
    assert en.explain(500, after="PORT", text="500 Illegal PORT command.").variant == (
        "illegal-port"
    )
    assert en.explain(500, after="PORT").variant is None
    assert en.explain(220, state=frozenset({"greeting"})).variant == "greeting"


def test_variant_overrides_keep_base_fields(en: Catalog) -> None:
    """A variant overrides only the fields it sets; code-level fields stay."""
    base = en.explain(426)
    abort = en.explain(426, state=frozenset({"abort"}))
    assert abort.severity == "warning" and base.severity == "error"
    assert abort.references == base.references
    assert abort.title != base.title


# -- unknown and non-standard codes ------------------------------------------------------------


def test_generic_unknown_code(en: Catalog) -> None:
    """An unknown 3-digit code gets the generic explanation built from its digits."""
    exp = en.explain(299)
    assert not exp.known and exp.variant is None and not exp.standard
    assert exp.reply_class == "Positive Completion"
    assert "299" in exp.title and "Positive Completion" in exp.description
    assert "{" not in exp.description + exp.when + exp.remedy + exp.title
    assert en.explain(452).known


def test_generic_group_from_second_digit(mini: Catalog) -> None:
    """The generic explanation names the class and group from the first two digits."""
    exp = mini.explain(452)
    assert (exp.reply_class, exp.group) == ("T4", "Files")
    assert exp.title == "Unknown 452"
    assert exp.description == "A T4 reply in group Files."
    assert exp.severity == "warning"


def test_unknown_code_outside_range(en: Catalog) -> None:
    """Codes outside 100..699 use the non-standard class label and no group."""
    exp = en.explain(999)
    assert not exp.known
    assert exp.reply_class == en.nonstandard_title and exp.group == ""


def test_malformed_code_raises(en: Catalog) -> None:
    """Codes below 100 are not reply codes."""
    with pytest.raises(ValueError):
        en.explain(42)


@pytest.mark.parametrize("code", WINSOCK_CODES)
def test_winsock_codes(en: Catalog, code: int) -> None:
    """Winsock codes are known, non-standard, and still get tells/next sentences."""
    exp = en.explain(code)
    assert exp.known and not exp.standard
    assert exp.reply_class == "Non-standard (Winsock error)"
    assert exp.group == ""
    assert en.class_tells(code) and en.class_next(code)


@pytest.mark.parametrize("lang", LANGUAGES)
@pytest.mark.parametrize("code", UNLISTED_CODES)
def test_unlisted_codes_keep_their_class(lang: str, code: int) -> None:
    """Non-RFC codes in 100..699 are known, non-standard, and still classed by their digits."""
    catalog = load_catalog(lang)
    exp = catalog.explain(code)
    assert exp.known and not exp.standard
    assert exp.reply_class == catalog.classes[str(code)[0]] and exp.group
    assert catalog.nonstandard_marker != catalog.nonstandard_title


def test_pyftpdlib_prot_521_is_explained(en: Catalog) -> None:
    """pyftpdlib's "521 PROT S unsupported" gets the PROT variant, not the RFC 1639 meaning."""
    exp = en.explain(521, after="PROT", text="PROT S unsupported (use C or P).")
    assert exp.variant == "after-prot" and "PROT P" in exp.remedy


def test_class_tells_and_next(en: Catalog) -> None:
    """class_tells and class_next come from the first digit."""
    assert en.class_tells(220) == en.class_tells(257)
    assert en.class_tells(220) != en.class_tells(426)
    assert en.class_next(426) == en.class_next(450)
    assert en.explain(631).group == "Authentication and accounting"


def test_explanation_is_frozen(en: Catalog) -> None:
    """Explanations are immutable values."""
    exp = en.explain(220)
    with pytest.raises(dataclasses.FrozenInstanceError):
        exp.title = "x"  # type: ignore[misc]


def test_state_tag_set_is_documented() -> None:
    """The accepted state tags are exactly the documented ones."""
    assert {
        "greeting", "before_login", "logged_in", "tls", "prot_p", "passive", "active",
        "transfer", "abort",
    } == STATE_TAGS


# -- default_lang ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, "en"),
        ({"LANG": "vi_VN.UTF-8"}, "vi"),
        ({"LANG": "en_US.UTF-8"}, "en"),
        ({"LC_ALL": "vi_VN", "LANG": "en_US"}, "vi"),
        ({"LC_ALL": "C", "LANG": "vi_VN"}, "en"),
        ({"LC_MESSAGES": "vi", "LANG": "en_US"}, "vi"),
        ({"LC_ALL": "", "LC_MESSAGES": "", "LANG": "vi_VN.UTF-8"}, "vi"),
        ({"LANG": "VI_vn"}, "vi"),
        ({"LANG": "fr_FR"}, "en"),
    ],
)
def test_default_lang(environ: dict[str, str], expected: str) -> None:
    """The first non-empty of LC_ALL, LC_MESSAGES, LANG decides; "vi..." means Vietnamese."""
    assert default_lang(environ) == expected


def test_default_lang_reads_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without an argument default_lang reads os.environ."""
    for name in ("LC_ALL", "LC_MESSAGES"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANG", "vi_VN.UTF-8")
    assert default_lang() == "vi"
