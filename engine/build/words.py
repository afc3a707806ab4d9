"""Docker's word rules for instruction arguments: quotes, escapes and ``$VAR`` substitution.

``process_word`` is applied to the arguments of the instructions for which
Docker substitutes variables (ADD, COPY, ENV, EXPOSE, FROM, LABEL,
STOPSIGNAL, USER, VOLUME, WORKDIR, ARG). Supported forms: ``$NAME``,
``${NAME}``, ``${NAME:-default}`` and ``${NAME:+alternative}``; single quotes
are literal, double quotes allow substitution, the escape character (``\\``
or the backtick set by the ``escape`` directive) protects the next character.
"""

from __future__ import annotations

from collections.abc import Mapping

from engine.errors import InvalidSpec

_NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_"


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.pos = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def take(self) -> str:
        ch = self.peek()
        self.pos += 1
        return ch

    def word(self, stop: str = "") -> str:
        out: list[str] = []
        while self.pos < len(self.text):
            ch = self.peek()
            if stop and ch in stop:
                break
            self.pos += 1
            if ch == self.escape:
                out.append(self.take())
            elif ch == "'":
                out.append(self._until("'"))
            elif ch == '"':
                out.append(self._double_quoted())
            elif ch == "$":
                out.append(self._variable())
            else:
                out.append(ch)
        return "".join(out)

    def _until(self, quote: str) -> str:
        end = self.text.find(quote, self.pos)
        if end < 0:
            raise InvalidSpec(f"unmatched {quote} in {self.text!r}")
        value = self.text[self.pos : end]
        self.pos = end + 1
        return value

    def _double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.pos >= len(self.text):
                raise InvalidSpec(f'unmatched " in {self.text!r}')
            ch = self.take()
            if ch == '"':
                return "".join(out)
            if ch == self.escape and self.peek() in ('"', "$", self.escape):
                out.append(self.take())
            elif ch == "$":
                out.append(self._variable())
            else:
                out.append(ch)

    def _name(self) -> str:
        start = self.pos
        while self.peek() and self.peek() in _NAME_CHARS:
            self.pos += 1
        return self.text[start : self.pos]

    def _variable(self) -> str:
        if self.peek() == "{":
            self.pos += 1
            name = self._name()
            if not name:
                raise InvalidSpec(f"bad substitution in {self.text!r}: expected a name after '${{'")
            if self.peek() == "}":
                self.pos += 1
                return self.env.get(name, "")
            if self.peek() != ":" or self.text[self.pos + 1 : self.pos + 2] not in ("-", "+"):
                raise InvalidSpec(
                    f"bad substitution in {self.text!r}: only ${{NAME}}, ${{NAME:-default}} "
                    "and ${NAME:+value} are supported"
                )
            op = self.text[self.pos + 1]
            self.pos += 2
            alt = self.word(stop="}")
            if self.take() != "}":
                raise InvalidSpec(f"bad substitution in {self.text!r}: missing '}}'")
            value = self.env.get(name, "")
            if op == "-":
                return value if value else alt
            return alt if value else ""
        name = self._name()
        if not name:
            return "$"
        return self.env.get(name, "")


def process_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` with quotes removed, escapes applied and variables from ``env`` substituted.

    Raises InvalidSpec for an unmatched quote or a malformed ``${...}``.
    """
    return _Lexer(text, env, escape).word()


def split_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """Split ``text`` on unquoted whitespace, then process each word (see :func:`process_word`)."""
    words: list[str] = []
    current: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == escape and i + 1 < len(text) and quote != "'":
            current.append(text[i : i + 2])
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch.isspace():
            if current:
                words.append("".join(current))
                current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if current:
        words.append("".join(current))
    return [process_word(w, env, escape) for w in words]
