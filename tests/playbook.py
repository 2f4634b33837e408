"""A playbook for the sans-IO session: a test writes the whole transcript, inputs and outputs.

Modelled on mitmproxy's ``Playbook`` (test/mitmproxy/proxy/tutils.py)::

    assert (
        Playbook()
        >> Start()
        << fact("session.open")
        >> FromServer(b"220 hi\\r\\n")
        << ToClient(b"220 hi\\r\\n")
        << fact("reply", code=220)
    )

``>>`` feeds the session an input, ``<<`` states the next output it must give. Evaluating the
playbook (``assert``) runs the inputs not yet run and compares the transcript it got with the
one written; a mismatch raises with a side-by-side diff of both. A playbook can be extended and
asserted again: the conversation goes on from where it was. Every fact the session emits is also
held to the vocabulary of ``ftpdiag/core/facts.py`` (known name, declared fields).

``fact(event, **fields)`` matches a ``Fact`` by name and the fields given (the others, such as
latencies, are not compared); ``Wait(seconds)`` moves the session's clock; ``Start()`` is
``session.start()``. ``Playbook(facts=False)`` leaves facts out of the transcript, for tests
about the wire only.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ftpdiag.core.config import SessionConfig
from ftpdiag.core.events import (
    GREETING_TIMER,
    CancelTimer,
    Fact,
    FromClient,
    FromServer,
    Input,
    Output,
    StartTimer,
    ToClient,
    ToServer,
    UpstreamConnected,
)
from ftpdiag.core.facts import BY_NAME
from ftpdiag.core.session import Session

CLIENT = ("127.0.0.1", 50000)
PROXY = ("127.0.0.1", 2121)
UPSTREAM = ("198.51.100.7", 21)
UPSTREAM_LOCAL = ("192.0.2.1", 40000)
CONNECTED = UpstreamConnected(UPSTREAM_LOCAL, UPSTREAM)


class Clock:
    """The session's clock: it moves only when the playbook says ``Wait``."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@dataclass(frozen=True)
class Start:
    """Pseudo-input: ``session.start()``."""


@dataclass(frozen=True)
class Wait:
    """Pseudo-input: the clock moves on by ``seconds``; the session is not called."""

    seconds: float


@dataclass(frozen=True)
class fact:  # lower case: it reads as a verb in a transcript, << fact("reply", code=230)
    """Expect a ``Fact`` named ``event`` whose fields include these (others not compared)."""

    event: str
    fields: Mapping[str, Any] = field(default_factory=dict)

    def __init__(self, event: str, **fields: Any) -> None:
        object.__setattr__(self, "event", event)
        object.__setattr__(self, "fields", fields)

    def matches(self, output: object) -> bool:
        return (
            isinstance(output, Fact)
            and output.event == self.event
            and all(k in output.fields and output.fields[k] == v for k, v in self.fields.items())
        )

    def __repr__(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.fields.items())
        return f"fact({self.event!r}{args})"


Step = tuple[str, Any]  # (">>", input) or ("<<", expected output)


def _matches(expected: Any, actual: Any) -> bool:
    if isinstance(expected, fact):
        return expected.matches(actual)
    return bool(expected == actual)


def _vocabulary_problem(output: Output) -> str | None:
    if not isinstance(output, Fact):
        return None
    spec = BY_NAME.get(output.event)
    if spec is None:
        return f"fact {output.event!r} is not in ftpdiag/core/facts.py"
    extra = set(output.fields) - set(spec.fields)
    if extra:
        return f"fact {output.event!r} has fields {sorted(extra)} not declared in facts.py"
    return None


class Playbook:
    """A scripted conversation with one ``Session``: see the module docstring."""

    def __init__(
        self,
        facts: bool = True,
        client: tuple[str, int] = CLIENT,
        upstream: tuple[str, int] = UPSTREAM,
        **config: Any,
    ) -> None:
        self.clock = Clock()
        self.session = Session(SessionConfig(**config), client, PROXY, upstream, self.clock)
        self.facts = facts
        self.expected: list[Step] = []
        self.actual: list[Step] = []
        self._ran = 0  # how many expected steps have been fed to the session

    def __rshift__(self, event: Input | Start | Wait) -> Playbook:
        self.expected.append((">>", event))
        return self

    def __lshift__(self, output: Output | fact) -> Playbook:
        if not self.facts and isinstance(output, Fact | fact):
            raise ValueError("this playbook leaves facts out: Playbook(facts=True) to expect one")
        self.expected.append(("<<", output))
        return self

    def _run(self) -> None:
        for kind, item in self.expected[self._ran :]:
            self._ran += 1
            if kind != ">>":
                continue
            self.actual.append((">>", item))
            if isinstance(item, Wait):
                self.clock.now += item.seconds
                continue
            outputs = self.session.start() if isinstance(item, Start) else self.session.handle(item)
            for output in outputs:
                problem = _vocabulary_problem(output)
                if problem is not None:
                    raise AssertionError(f"after {item!r}: {problem}")
                if self.facts or not isinstance(output, Fact):
                    self.actual.append(("<<", output))

    def __bool__(self) -> bool:
        """Run the new inputs; True when the transcript is the one written, else raise."""
        self._run()
        ok = len(self.expected) == len(self.actual) and all(
            e[0] == a[0] and _matches(e[1], a[1])
            for e, a in zip(self.expected, self.actual, strict=True)
        )
        if ok:
            return True
        # A matched step shows as written, so that only the real differences stand out.
        shown = [
            _line(e if i < len(self.expected) and _same(e, a) else a)
            for i, (a, e) in enumerate(
                zip(self.actual, [*self.expected, *[None] * len(self.actual)], strict=False)
            )
        ]
        written = [_line(e) for e in self.expected]
        diff = difflib.unified_diff(written, shown, "written", "got", n=4, lineterm="")
        raise AssertionError("the session's transcript differs:\n" + "\n".join(diff))


def _same(expected: Step | None, actual: Step) -> bool:
    return expected is not None and expected[0] == actual[0] and _matches(expected[1], actual[1])


def _line(step: Step | None) -> str:
    assert step is not None
    return f"{step[0]} {step[1]!r}"


def greeted(*then: Output, **config: Any) -> Playbook:
    """A playbook past the opening, asserted: open, upstream up, the server's 220, and the
    outputs ``then`` that the 220 brings in the configuration (the proxy's own AUTH TLS).

    Not for the idle timer, which adds outputs throughout."""
    playbook = (
        Playbook(**config)
        >> Start()
        << fact("session.open", client="127.0.0.1:50000", upstream="198.51.100.7:21")
        >> CONNECTED
        << fact("upstream.connect", local="192.0.2.1:40000", peer="198.51.100.7:21")
        << StartTimer(GREETING_TIMER, 10.0)
        >> FromServer(b"220 hi\r\n")
        << fact("reply", code=220, command=None, state=["greeting", "before_login"])
        << CancelTimer(GREETING_TIMER)
        << ToClient(b"220 hi\r\n")
    )
    for output in then:
        playbook << output
    assert playbook
    return playbook


def logged_in(**config: Any) -> Playbook:
    """A playbook past the opening and USER, PASS, 230 (see ``greeted``)."""
    playbook = greeted(**config)
    assert (
        playbook
        >> FromClient(b"USER u\r\n")
        << fact("command", verb="USER", arg="u")
        << ToServer(b"USER u\r\n")
        >> FromServer(b"331 pw\r\n")
        << fact("reply", code=331, command="USER")
        << ToClient(b"331 pw\r\n")
        >> FromClient(b"PASS p\r\n")
        << fact("command", verb="PASS", arg="****")
        << ToServer(b"PASS p\r\n")
        >> FromServer(b"230 ok\r\n")
        << fact("reply", code=230, command="PASS", arg="****")
        << ToClient(b"230 ok\r\n")
    )
    return playbook
