"""Search terms: their grammar, what they match, and how a platform's search engine is asked for them.

A query design's term is one line in this grammar (``docs/terms.md`` has the table)::

    term     := choice | sequence
    choice   := sequence ("OR" sequence)+      all alternatives at one level
    sequence := item (["AND"] item)*           all of them
    item     := "-" atom | atom                "-": the text must not contain it
    atom     := WORD | "#"WORD | '"' words '"' | "(" term ")"

- A word matches whole words only, case-insensitively: ``klima`` matches "Klima." and "#klima"
  but not "klimaet"; Danish letters are letters, so ``grøn`` does not match inside "grønne".
- A hashtag matches only the hashtag: ``#dkpol`` matches "#DKpol" and not "dkpol".
- A quoted phrase matches its words in order, separated by any whitespace.
- Words side by side must all occur, anywhere in the text (as GDELT and web search engines read
  them); ``AND`` may be written for clarity. ``OR`` (upper case) separates alternatives.
- An all-of group and ``OR`` at the same level must be told apart with parentheses
  (``(a b) OR c`` or ``a (b OR c)``): engines disagree on which binds first, so neither is assumed.
- An exclusion needs something to exclude from: ``-atomkraft`` alone, or as an alternative of an
  ``OR``, is an error.

``TermMatcher`` says which of a design's terms a text matches; its results are what
``search_terms_matched`` records, the terms as the design wrote them. Every arena uses it, so a
term means the same on every platform. An arena whose platform can search a term sends it along
(``disjuncts`` turns a term into all-of clauses that a simple engine can run one by one) and
still matches locally where it has the text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal

from observatory_pipelines.core.platform.errors import ConfigError

#: The most all-of clauses one term may expand to (``disjuncts``): each can become one platform query.
MAX_CLAUSES = 32


class TermSyntaxError(ConfigError, ValueError):
    """A term that does not follow the grammar; the message is one line and says how to fix it."""


# --- the tree ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Word:
    text: str

    def render(self) -> str:
        return self.text


@dataclass(frozen=True)
class Hashtag:
    text: str  # without the '#'

    def render(self) -> str:
        return f"#{self.text}"


@dataclass(frozen=True)
class Phrase:
    words: tuple[str, ...]

    def render(self) -> str:
        return '"' + " ".join(self.words) + '"'


Atom = Word | Hashtag | Phrase


@dataclass(frozen=True)
class AllOf:
    required: tuple[Node, ...]
    excluded: tuple[Node, ...] = ()

    def render(self) -> str:
        parts = [_render_inner(n) for n in self.required] + ["-" + _render_inner(n) for n in self.excluded]
        return " ".join(parts)


@dataclass(frozen=True)
class AnyOf:
    options: tuple[Node, ...]

    def render(self) -> str:
        return " OR ".join(_render_inner(n) for n in self.options)


Node = Word | Hashtag | Phrase | AllOf | AnyOf


def _render_inner(node: Node) -> str:
    return f"({node.render()})" if isinstance(node, AllOf | AnyOf) else node.render()


TermKind = Literal["keyword", "phrase", "hashtag", "boolean"]


@dataclass(frozen=True)
class Term:
    """One parsed term: ``text`` as the design wrote it (stripped), ``root`` its meaning."""

    text: str
    root: Node

    @property
    def kind(self) -> TermKind:
        """What ``search_terms.term_type`` records."""
        if isinstance(self.root, Word):
            return "keyword"
        if isinstance(self.root, Hashtag):
            return "hashtag"
        if isinstance(self.root, Phrase):
            return "phrase"
        return "boolean"

    def atoms(self) -> Iterator[Atom]:
        yield from _atoms(self.root)

    def disjuncts(self) -> list[Clause]:
        """The term as alternatives, each an all-of clause of atoms with exclusions (its DNF).

        ``(a OR b) c -d`` gives ``[a c -d, b c -d]``; an engine that takes no nested groups runs
        each clause as one query. At most ``MAX_CLAUSES`` (checked when parsed).
        """
        return _dnf(self.root)


@dataclass(frozen=True)
class Clause:
    """All of ``required`` and none of ``excluded``; an excluded group stays a group."""

    required: tuple[Atom, ...]
    excluded: tuple[Node, ...] = ()


def spell_exclusions(node: Node) -> list[Atom]:
    """An excluded node as atoms each excluded on its own, for engines that take only ``-word``:
    ``-(a OR b)`` is ``-a -b``. ``ValueError`` naming the group when that cannot be done (``-(a b)``)."""
    if isinstance(node, AnyOf) and not any(isinstance(o, AllOf | AnyOf) for o in node.options):
        return [option for option in node.options if not isinstance(option, AllOf | AnyOf)]
    if isinstance(node, AllOf | AnyOf):
        raise ValueError(f"-({node.render()})")
    return [node]


def _atoms(node: Node) -> Iterator[Atom]:
    if isinstance(node, AllOf):
        for child in node.required + node.excluded:
            yield from _atoms(child)
    elif isinstance(node, AnyOf):
        for child in node.options:
            yield from _atoms(child)
    else:
        yield node


def _dnf(node: Node) -> list[Clause]:
    if isinstance(node, AnyOf):
        return [clause for option in node.options for clause in _dnf(option)]
    if isinstance(node, AllOf):
        clauses = [Clause(required=(), excluded=node.excluded)]
        for child in node.required:
            clauses = [
                Clause(required=left.required + right.required, excluded=left.excluded + right.excluded)
                for left in clauses
                for right in _dnf(child)
            ]
        return clauses
    return [Clause(required=(node,))]


# --- parsing -----------------------------------------------------------------------------------

_TOKEN = re.compile(
    r'\s*(?:(?P<quote>"[^"]*"?)|(?P<paren>[()])|(?P<minus>-)(?=[^\s()"-]|"|\()|(?P<word>[^\s()"-][^\s()"]*))'
)
_HASHTAG_BODY = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True)
class _Token:
    kind: Literal["phrase", "open", "close", "minus", "or", "and", "word"]
    value: str
    column: int


def _tokens(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if match is None:  # a '-' followed by space, ')' or the end
            column = len(text) - len(text[position:].lstrip()) + 1
            raise TermSyntaxError(f"'-' at column {column} excludes nothing; write it against the word: -atomkraft")
        column = match.start(match.lastgroup or 0) + 1
        if match.group("quote") is not None:
            quoted = match.group("quote")
            if len(quoted) < 2 or not quoted.endswith('"'):
                raise TermSyntaxError(f'the quote at column {column} is never closed; end the phrase with "')
            tokens.append(_Token("phrase", quoted[1:-1], column))
        elif match.group("paren") is not None:
            tokens.append(_Token("open" if match.group("paren") == "(" else "close", match.group("paren"), column))
        elif match.group("minus") is not None:
            tokens.append(_Token("minus", "-", column))
        else:
            word = match.group("word")
            if word == "OR":
                tokens.append(_Token("or", word, column))
            elif word == "AND":
                tokens.append(_Token("and", word, column))
            elif word == "NOT":
                raise TermSyntaxError(f"NOT at column {column} is not an operator here; exclude with a minus: -word")
            else:
                tokens.append(_Token("word", word, column))
        position = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokens(text)
        self.index = 0

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def parse(self) -> Node:
        if not self.tokens:
            raise TermSyntaxError('the term is empty; write a word, a "phrase" or a #hashtag')
        return self.group(closing=False)

    def group(self, closing: bool) -> Node:
        """Alternatives separated by OR, each an all-of sequence; stops at ')' or the end."""
        first, bare = self.sequence()
        alternatives, any_bare = [first], bare
        while (token := self.peek()) is not None and token.kind == "or":
            self.take()
            following = self.peek()
            if following is None or following.kind in ("or", "close"):
                raise TermSyntaxError(f"OR at column {token.column} has nothing after it")
            alternative, bare = self.sequence()
            alternatives.append(alternative)
            any_bare = any_bare or bare
        token = self.peek()
        if token is not None and token.kind == "close" and not closing:
            raise TermSyntaxError(f"')' at column {token.column} closes nothing; remove it or add the '('")
        if len(alternatives) == 1:
            return first
        if any_bare:
            raise TermSyntaxError(
                f"'{self.text}' mixes words side by side with OR; group them with parentheses, "
                "e.g. (a b) OR c, or a (b OR c)"
            )
        return AnyOf(tuple(alternatives))

    def sequence(self) -> tuple[Node, bool]:
        """An all-of sequence, and whether it has several items at this level (not one parenthesised group)."""
        required: list[Node] = []
        excluded: list[Node] = []
        first = self.peek()
        if first is not None and first.kind == "or":
            raise TermSyntaxError(f"OR at column {first.column} has nothing before it")
        while (token := self.peek()) is not None and token.kind not in ("or", "close"):
            if token.kind == "and":
                self.take()
                following = self.peek()
                if not (required or excluded) or following is None or following.kind in ("or", "close", "and"):
                    raise TermSyntaxError(f"AND at column {token.column} needs a word on each side")
                continue
            if token.kind == "minus":
                self.take()
                excluded.append(self.atom())
            else:
                required.append(self.atom())
        if not required:
            column = first.column if first is not None else len(self.text) + 1
            if excluded:
                raise TermSyntaxError(
                    f"the exclusion at column {column} excludes from nothing; add what must be there: klima -atomkraft"
                )
            raise TermSyntaxError(f"nothing to search for at column {column}")
        if len(required) == 1 and not excluded:
            return required[0], False
        return AllOf(tuple(required), tuple(excluded)), True

    def atom(self) -> Node:
        token = self.peek()
        if token is None:
            raise TermSyntaxError(f"'{self.text}' ends where a word was expected")
        self.take()
        if token.kind == "open":
            inner = self.group(closing=True)
            closing = self.peek()
            if closing is None or closing.kind != "close":
                raise TermSyntaxError(f"the '(' at column {token.column} is never closed; add ')'")
            self.take()
            return inner
        if token.kind == "phrase":
            words = tuple(token.value.split())
            if not words:
                raise TermSyntaxError(f"the phrase at column {token.column} is empty; put words between the quotes")
            return Word(words[0]) if len(words) == 1 else Phrase(words)
        if token.kind == "word":
            if token.value.startswith("#"):
                body = token.value[1:]
                if not _HASHTAG_BODY.fullmatch(body):
                    raise TermSyntaxError(
                        f"'{token.value}' at column {token.column} is not a hashtag; a hashtag is # and letters or digits"
                    )
                return Hashtag(body)
            return Word(token.value)
        raise TermSyntaxError(f"'{token.value}' at column {token.column} cannot start a word; write a word there")


def parse_term(text: str) -> Term:
    """The term ``text`` parsed; ``TermSyntaxError`` (one line, with the column) when it is not a term."""
    if not isinstance(text, str):
        raise TermSyntaxError(f"a term is text, not {type(text).__name__}")
    stripped = unicodedata.normalize("NFC", text).strip()
    if "\n" in stripped or "\r" in stripped:
        raise TermSyntaxError("a term is one line; put each term on its own entry")
    root = _Parser(stripped).parse()
    clauses = len(_dnf(root))
    if clauses > MAX_CLAUSES:
        raise TermSyntaxError(
            f"'{stripped}' expands to {clauses} alternatives (at most {MAX_CLAUSES}); split it into several terms"
        )
    return Term(text=stripped, root=root)


# --- matching ----------------------------------------------------------------------------------


def _pattern(atom: Atom) -> re.Pattern[str]:
    # (?<!\w) and (?!\w) rather than \b: \b misbehaves next to the non-word characters a word may
    # start or end with ("CO2-", "dr.dk"). A hashtag must not be the tail of a longer tag.
    if isinstance(atom, Hashtag):
        body = r"(?<![\w#])#" + re.escape(atom.text)
    elif isinstance(atom, Phrase):
        body = r"(?<!\w)" + r"\s+".join(re.escape(w) for w in atom.words)
    else:
        body = r"(?<!\w)" + re.escape(atom.text)
    return re.compile(body + r"(?!\w)", re.IGNORECASE | re.UNICODE)


def _holds(node: Node, present: set[Atom]) -> bool:
    if isinstance(node, AllOf):
        return all(_holds(n, present) for n in node.required) and not any(_holds(n, present) for n in node.excluded)
    if isinstance(node, AnyOf):
        return any(_holds(n, present) for n in node.options)
    return node in present


_WORDS = re.compile(r"\w+", re.UNICODE)
_HASHTAGS = re.compile(r"(?<![\w#])#(\w+)", re.UNICODE)


class TermMatcher:
    """Which of a design's terms a text matches (the terms as written, in the design's order).

    The text is split into words and hashtags once; a term's plain words and hashtags are looked
    up in those sets, and only phrases and words with punctuation ("CO2-afgift") are searched with
    a pattern, a phrase only when all its words are there. So the cost per text grows with the
    text, not with how many terms share a word. Terms that do not parse raise ``TermSyntaxError``
    here: a design is validated before it is stored.
    """

    def __init__(self, terms: Iterable[str]):
        parsed = [parse_term(t) for t in dict.fromkeys(t.strip() for t in terms if t and t.strip())]
        self._parsed = list({t.text: t for t in parsed}.values())
        self.terms: tuple[str, ...] = tuple(t.text for t in self._parsed)
        self._words: dict[str, Atom] = {}
        self._hashtags: dict[str, Atom] = {}
        self._searched: list[tuple[Atom, tuple[str, ...], re.Pattern[str]]] = []
        for atom in dict.fromkeys(atom for term in self._parsed for atom in term.atoms()):
            if isinstance(atom, Hashtag):
                self._hashtags[atom.text.casefold()] = atom
            elif isinstance(atom, Word) and _WORDS.fullmatch(atom.text):
                self._words[atom.text.casefold()] = atom
            else:
                words = atom.words if isinstance(atom, Phrase) else ()
                needed = tuple(w.casefold() for w in words if _WORDS.fullmatch(w))
                self._searched.append((atom, needed, _pattern(atom)))

    def match(self, *texts: str | None) -> list[str]:
        # NUL, not whitespace, between the texts: a phrase must not run from a title into its body.
        haystack = "\x00".join(unicodedata.normalize("NFC", t) for t in texts if t)
        if not haystack:
            return []
        folded = haystack.casefold()
        words = set(_WORDS.findall(folded))
        present = {atom for word, atom in self._words.items() if word in words}
        if self._hashtags:
            present.update(self._hashtags[t] for t in set(_HASHTAGS.findall(folded)) if t in self._hashtags)
        present.update(
            atom
            for atom, needed, pattern in self._searched
            if all(w in words for w in needed) and pattern.search(haystack)
        )
        if not present:
            return []
        return [term.text for term in self._parsed if _holds(term.root, present)]
