"""The budget every JSON document Freight parses is held to: nesting depth and Unicode.

Size is bounded where the bytes arrive (`[security] max_body_bytes`, `[limits]
max_line_bytes`, `[limits] max_message_batch_bytes`). A size limit alone does not bound
the cost of a document, so two more rules hold for every request body, batch file line
and Message Batch request:

- **Nesting**: at most `[limits] max_json_depth` (64) levels of arrays and objects.
  Parsers, validators and serialisers recurse, or keep per-level state, once per level:
  a 1 MB body nested 200,000 deep costs far more than a 1 MB prompt (and past about
  1,000 levels Python's json gives up with a RecursionError).
- **Numbers**: finite ones only. Python's json reads `NaN`, `Infinity` and `-Infinity`,
  which are not JSON; no API accepts them and no result line could carry them.
- **Unicode**: no lone UTF-16 surrogate, written as an escape (`\\ud800` without a
  `\\udc00`-`\\udfff` after it) or as its raw bytes. JSON can spell one; no UTF-8 text
  (a database row, a result file, a tokenizer's input) can hold it.

`problem` checks a whole document's bytes before anything is parsed, at C speed and in
memory linear in its size. Most documents are shallow and pure text, so it usually
costs two byte counts and one search. Message Batch bodies, read as a stream by yajl,
apply the same rules per request (protocol/message_batch_input.py), with
`SurrogatesExposed` to make yajl report the lone surrogates it would otherwise hide.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from typing import BinaryIO

# The most `[limits] max_json_depth` may be (its `le`): at a few hundred levels the
# recursive code on the request path (json, pydantic) is well inside Python's limits.
MAX_CONFIGURABLE_DEPTH = 512
SETTING = "[limits] max_json_depth"

# A JSON string: a complete one, or one that runs to the end of the text it is looked
# for in (group 1: a string cut by a window's end). Possessive, and the second branch
# cannot fail, so a scan is linear even over a long run of `\"`.
_STRINGS = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"|("[^"\\]*+(?:\\.[^"\\]*+)*+\\?\Z)', re.DOTALL)
_WINDOW_BYTES = 1 << 16  # scanned at a time: bounds the scan's memory, whatever the input
# Brackets only, each pair the same: `[` opens and `]` closes, arrays and objects alike.
_AS_SQUARE = bytes.maketrans(b"{}", b"[]")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("]"): -1}

# Anything that could spell a surrogate: an escape \ud800-\udfff, or a raw surrogate's
# UTF-8-style bytes (ED A0..BF xx, never valid UTF-8).
_SURROGATE_HINT = re.compile(rb"\\u[dD][89a-fA-F]|\xed[\xa0-\xbf]")
# Each surrogate escape, with the backslashes before it (an even run: the escape is
# real, not the text `\\ud800`), a high one with the low one that pairs it, if any.
_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*+\\u(?P<high>[dD][89abAB][0-9a-fA-F]{2})"
    rb"(?P<low>\\u[dD][c-fC-F][0-9a-fA-F]{2})?"
    rb"|(?<!\\)(?:\\\\)*+\\u(?P<lone>[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?P<raw>\xed[\xa0-\xbf][\x80-\xbf])"
)


def _brackets(document: bytes) -> bytes:
    """The brackets of `document` outside its strings, as `[` and `]`, in order.

    Linear and at C speed, a window of 64 KiB at a time (which bounds the memory a
    window's pieces take): strings are split out by one regex, all but the brackets
    deleted by one translate. A string that a window's end cuts starts the next window.
    """
    found: list[bytes] = []
    pos = 0
    while pos < len(document):
        end = min(pos + _WINDOW_BYTES, len(document))
        # [outside, cut string or None, outside, ..., outside]: the strings split out.
        pieces = _STRINGS.split(document[pos:end])
        cut_string = pieces[-2] if len(pieces) > 1 else None
        if cut_string is not None and end < len(document):
            if len(cut_string) == end - pos:  # one string fills the window: skip it
                whole = _STRINGS.match(document, pos)  # always: pos is at its quote
                pos = whole.end() if whole is not None else end
                continue
            end -= len(cut_string)  # the next window starts with it
        found.append(b"".join(pieces[::2]).translate(_AS_SQUARE, _NOT_BRACKETS))
        pos = end
    return b"".join(found)


def _fits(brackets: bytes, max_depth: int) -> bool:
    """Whether `brackets` nest at most `max_depth` deep: each pass of `replace` removes
    the innermost pairs, one level, at C speed; usually two or three passes do."""
    for _ in range(max_depth):
        if not brackets:
            return True
        inner = brackets.replace(b"[]", b"")
        if len(inner) == len(brackets):
            return False  # unbalanced (`][`): not JSON
        brackets = inner
    return not brackets


def _deepest(brackets: bytes) -> int:
    return max(itertools.accumulate(map(_STEP.__getitem__, brackets), initial=0))


def nesting_depth(document: bytes) -> int:
    """How many levels of arrays and objects `document` nests (0 for a scalar).

    Brackets inside strings do not count. Linear in the document's size, at C speed.
    """
    return _deepest(_brackets(document))


def lone_surrogate(document: bytes) -> str | None:
    """The first lone UTF-16 surrogate in `document`, as an escape (`\\ud800`), or None."""
    if _SURROGATE_HINT.search(document) is None:
        return None
    for match in _SURROGATE.finditer(document):  # only the surrogates: usually few
        if match["raw"] is not None:
            b0, b1, b2 = match["raw"]
            return f"\\u{((b0 & 0x0F) << 12) | ((b1 & 0x3F) << 6) | (b2 & 0x3F):04x}"
        if match["lone"] is not None:
            return "\\u" + match["lone"].decode().lower()
        if match["low"] is None:
            return "\\u" + match["high"].decode().lower()
    return None


def too_deep(subject: str, depth: int, max_depth: int) -> str:
    """The message for `subject` (e.g. "Line 3") nesting `depth` levels, over the limit."""
    return (
        f"{subject} nests JSON {depth} levels deep; the limit is {max_depth} ({SETTING}). "
        "Flatten the arrays and objects."
    )


def not_unicode(subject: str, surrogate: str) -> str:
    """The message for `subject` holding the lone surrogate `surrogate` (`\\ud800`)."""
    return (
        f"{subject} holds a lone UTF-16 surrogate escape ({surrogate}), which is not valid "
        "Unicode. A character beyond U+FFFF is written as a surrogate pair (\\ud83d\\ude00) "
        "or as UTF-8."
    )


def non_finite_number(document: bytes) -> str | None:
    """The first `NaN`, `Infinity` or `-Infinity` in `document` outside its strings, or None.

    Parses only a document that holds one of those words at all (usually in a string);
    its depth is checked first, so the parse is bounded.
    """
    if b"NaN" not in document and b"Infinity" not in document:
        return None
    found: list[str] = []

    def refuse(name: str) -> None:
        found.append(name)
        raise ValueError(name)

    # Not JSON, or too deep: its parser will say so.
    with contextlib.suppress(ValueError, RecursionError):
        json.loads(document, parse_constant=refuse)
    return found[0] if found else None


def not_finite(subject: str, constant: str) -> str:
    """The message for `subject` holding the number `constant` (NaN, Infinity)."""
    return (
        f"{subject} holds the number {constant}, which is not JSON: numbers must be "
        "finite. Send a finite number, or null where a value may be absent."
    )


def problem(document: bytes, subject: str, max_depth: int) -> str | None:
    """What is wrong with `document` under the budget (a message naming `subject`), or None.

    Cheap for the usual document: with no more brackets than the depth limit it cannot
    nest deeper, a few passes over its brackets show that it does not, and one search
    rules out surrogates.
    """
    if document.count(b"[") + document.count(b"{") > max_depth:
        brackets = _brackets(document)
        if not _fits(brackets, max_depth):
            depth = _deepest(brackets)  # the exact depth, for the message
            if depth > max_depth:  # else unbalanced: not JSON, as its parser will say
                return too_deep(subject, depth, max_depth)
    surrogate = lone_surrogate(document)
    if surrogate is not None:
        return not_unicode(subject, surrogate)
    constant = non_finite_number(document)
    if constant is not None:
        return not_finite(subject, constant)
    return None


class SurrogatesExposed:
    """`fh`, read with each lone high surrogate escape spelled as the surrogate's raw bytes.

    yajl decodes an escape `\\ud800` that no `\\udc00`-`\\udfff` follows to '?', without a
    word. Spelled as its bytes (ED A0 80) it passes yajl and fails UTF-8 decoding at the
    string that holds it, so the reader names that request, as it does for a lone low
    surrogate (which yajl passes on as such bytes itself).

    Each read hands on all but the last few bytes, held back so that no escape is split
    between reads; a cut inside a run of backslashes leaves an even number before it, so
    the rest of the run still says whether the escape after it is real.
    """

    _KEEP = 12  # an escape and the one that may pair it: \ud800\udc00
    _HINT = re.compile(rb"\\u[dD][89abAB]")
    _LONE_HIGH = re.compile(
        rb"(?<!\\)(?P<escaped>(?:\\\\)*+)\\u(?P<hex>[dD][89abAB][0-9a-fA-F]{2})"
        rb"(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    )

    def __init__(self, fh: BinaryIO) -> None:
        self.fh = fh
        self.pending = b""
        self.is_eof = False

    def read(self, size: int = -1) -> bytes:
        """Up to about `size` bytes; b"" only at the end."""
        if size == 0:
            return b""
        while True:
            if not self.is_eof:
                chunk = self.fh.read(size if size > 0 else 1 << 16)
                self.is_eof = not chunk
                self.pending += chunk
            if self.is_eof:
                out, _ = self._expose(self.pending, len(self.pending))
                self.pending = b""
                return out
            cut = len(self.pending) - self._KEEP
            if cut > 0:
                before = self.pending[:cut]
                if (len(before) - len(before.rstrip(b"\\"))) % 2:
                    cut -= 1
            if cut > 0:
                out, end = self._expose(self.pending, cut)
                self.pending = self.pending[end:]
                if out:
                    return out

    def _expose(self, buffer: bytes, cut: int) -> tuple[bytes, int]:
        """`buffer` rewritten up to `cut` (or to the end of an escape begun before it), and
        where in `buffer` that ends.

        An escape whose pairing escape could lie past the end of `buffer` (after a run
        of backslashes that crosses `cut`) is left for the next read: the end is then
        before it, maybe before `cut`.
        """
        if self._HINT.search(buffer) is None:
            return buffer[:cut], cut
        parts: list[bytes] = []
        start = end = 0
        for match in self._LONE_HIGH.finditer(buffer):
            if match.start() >= cut:
                break
            if match.end() + 6 > len(buffer) and not self.is_eof:
                cut = match.start()
                break
            surrogate = chr(int(match["hex"], 16)).encode("utf-8", "surrogatepass")
            parts += [buffer[start : match.start()], match["escaped"], surrogate]
            start = end = match.end()
        end = max(cut, end)
        parts.append(buffer[start:end])
        return b"".join(parts), end
