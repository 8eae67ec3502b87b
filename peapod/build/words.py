"""Docker's word processing for Containerfile arguments: quotes, escapes and ``$VAR`` expansion.

``expand_word`` gives one string (WORKDIR, USER, COPY paths...); ``expand_words`` splits on
unquoted whitespace (ENV/LABEL pairs, EXPOSE). Supported forms: ``$NAME``, ``${NAME}``,
``${NAME:-word}``, ``${NAME-word}``, ``${NAME:+word}``, ``${NAME+word}``, ``${NAME:?msg}``,
``${NAME?msg}``. Single quotes are literal; inside double quotes the escape character only escapes
``"``, ``$`` and itself (as in Docker's shell lexer). Unset variables expand to ``""``.
"""

from __future__ import annotations

from collections.abc import Mapping


class WordError(ValueError):
    """Bad quoting or a ``${VAR?}`` failure."""


def _is_name_start(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalpha())


def _is_name(c: str) -> bool:
    return c == "_" or (c.isascii() and c.isalnum())


class _Lexer:
    def __init__(self, text: str, env: Mapping[str, str], escape: str) -> None:
        self.text = text
        self.env = env
        self.escape = escape
        self.i = 0

    def peek(self) -> str:
        return self.text[self.i] if self.i < len(self.text) else ""

    def take(self) -> str:
        c = self.peek()
        self.i += 1
        return c

    def words(self, split: bool) -> list[str]:
        out: list[str] = []
        cur: list[str] = []
        started = False
        while self.i < len(self.text):
            c = self.take()
            if split and c.isspace():
                if started:
                    out.append("".join(cur))
                    cur, started = [], False
                continue
            started = True
            if c == "'":
                end = self.text.find("'", self.i)
                if end < 0:
                    raise WordError("unexpected end of statement while looking for matching single-quote")
                cur.append(self.text[self.i:end])
                self.i = end + 1
            elif c == '"':
                cur.append(self.double_quoted())
            elif c == self.escape:
                nxt = self.take()
                cur.append(nxt if nxt else c)
            elif c == "$":
                cur.append(self.variable())
            else:
                cur.append(c)
        if started or not split:
            out.append("".join(cur))
        return out

    def double_quoted(self) -> str:
        out: list[str] = []
        while True:
            if self.i >= len(self.text):
                raise WordError("unexpected end of statement while looking for matching double-quote")
            c = self.take()
            if c == '"':
                return "".join(out)
            if c == self.escape:
                nxt = self.peek()
                if nxt in ('"', "$", self.escape) and nxt:
                    out.append(self.take())
                else:
                    out.append(c)
            elif c == "$":
                out.append(self.variable())
            else:
                out.append(c)

    def variable(self) -> str:
        c = self.peek()
        if c == "{":
            self.i += 1
            return self.braced()
        if not _is_name_start(c):
            return "$"
        start = self.i
        while _is_name(self.peek()):
            self.i += 1
        return self.env.get(self.text[start:self.i], "")

    def braced(self) -> str:
        start = self.i
        while _is_name(self.peek()):
            self.i += 1
        name = self.text[start:self.i]
        if not name:
            raise WordError(f"bad substitution: ${{{self.text[start:].split('}', 1)[0]}}}")
        if self.peek() == "}":
            self.i += 1
            return self.env.get(name, "")
        colon = self.peek() == ":"
        if colon:
            self.i += 1
        op = self.take()
        if op not in ("-", "+", "?"):
            raise WordError(f"unsupported modifier ({op or 'end'}) in substitution of {name}")
        depth, word_start = 1, self.i
        while self.i < len(self.text):
            c = self.take()
            if c == self.escape:
                self.i += 1
            elif c == "{" and self.text[self.i - 2:self.i - 1] == "$":
                depth += 1
            elif c == "}":
                depth -= 1
                if depth == 0:
                    break
        else:
            raise WordError(f"missing '}}' in substitution of {name}")
        word = expand_word(self.text[word_start:self.i - 1], self.env, self.escape)
        value = self.env.get(name)
        is_set = value is not None and (value != "" or not colon)
        if op == "-":
            return value if is_set else word  # type: ignore[return-value]
        if op == "+":
            return word if is_set else ""
        if not is_set:
            raise WordError(f"{name}: {word or 'is not allowed to be unset'}")
        return value  # type: ignore[return-value]


def expand_word(text: str, env: Mapping[str, str], escape: str = "\\") -> str:
    """``text`` as one word: quotes removed, escapes applied, variables expanded."""
    return _Lexer(text, env, escape).words(split=False)[0]


def expand_words(text: str, env: Mapping[str, str], escape: str = "\\") -> list[str]:
    """``text`` split into words on unquoted whitespace, each processed like :func:`expand_word`."""
    return _Lexer(text, env, escape).words(split=True)


def key_value_pairs(words: list[str]) -> list[tuple[str, str]]:
    """``["a=1", "b=x y"]`` -> pairs; a word without ``=`` is an error."""
    out = []
    for w in words:
        key, sep, value = w.partition("=")
        if not sep or not key:
            raise WordError(f"{w!r}: expected KEY=VALUE")
        out.append((key, value))
    return out
