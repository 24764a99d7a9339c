"""A saved search's text read as a boolean query, then written in a provider's own query language.

arXiv and PubMed take a query language rather than free text, and a saved search must mean
the same there as at the other providers. So the text is read the same way for both: words
and "quoted phrases", `AND`, `OR`, `NOT` and parentheses; adjacent terms must all occur
(AND); a word holding characters other than its `word_piece`s is searched as the phrase of
its pieces (`p53/mdm2` as "p53 mdm2"), so no punctuation reaches the provider's parser.
Where AND and OR mix, the AND runs are parenthesized (AND binds tighter, and PubMed reads
strictly left to right). Refused with SearchTextError: a text without a word, an unmatched
quote or parenthesis, an operator without a term on each side, and a NOT with no term
before it (neither provider has a NOT of one operand that means what it says elsewhere).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from scholar_pipeline.providers.base import SearchTextError

_QUERY_TOKEN = re.compile(r'"[^"]*"|[()]|[^\s()"]+')


@dataclass(frozen=True)
class QueryLanguage:
    provider: str
    word_piece: re.Pattern[str]  # what a searchable word is made of
    field_prefix: str = ""  # put before every term (arXiv's `all:`)
    not_operator: str = "NOT"  # how "a NOT b" is written (arXiv: `ANDNOT`)

    def write(self, text: str) -> str:
        """The text as an expression of this language (unparenthesized at the top)."""
        return _Parser(text, self).parse()

    def write_operand(self, text: str) -> str:
        """The text as one operand, to be ANDed with a date window: parenthesized when compound."""
        expression = self.write(text)
        return f"({expression})" if self.is_compound(expression) else expression

    def is_compound(self, expression: str) -> bool:
        return any(f" {operator} " in expression for operator in ("AND", "OR", self.not_operator))


class _Parser:
    def __init__(self, text: str, language: QueryLanguage):
        self.text, self.language = text, language
        if text.count('"') % 2:
            self._refuse("a double quote is not closed; close the phrase or remove the quote")
        self.tokens = [t for t in (self._token(raw) for raw in _QUERY_TOKEN.findall(text)) if t is not None]
        self.at = 0

    def parse(self) -> str:
        if not any(isinstance(t, tuple) for t in self.tokens):
            self._refuse(f"no word to search for once {self.language.provider}'s query syntax is set aside")
        expression = self._expression()
        if self._peek() == ")":
            self._refuse("a `)` closes no `(`")
        return expression

    def _refuse(self, why: str):
        raise SearchTextError(f"{self.text!r}: {why}")

    def _token(self, raw: str) -> str | tuple[str, str] | None:
        """`(`, `)`, an operator, ("term", the provider's term), or None for punctuation alone."""
        if raw in ("(", ")", "AND", "OR", "NOT", "ANDNOT"):
            return raw
        quoted = raw.startswith('"')
        pieces = self.language.word_piece.findall(raw[1:-1] if quoted else raw)
        if not pieces:
            return None
        prefix = self.language.field_prefix
        return ("term", f'{prefix}"{" ".join(pieces)}"' if quoted or len(pieces) > 1 else f"{prefix}{pieces[0]}")

    def _peek(self):
        return self.tokens[self.at] if self.at < len(self.tokens) else None

    def _next(self):
        token = self._peek()
        self.at += 1
        return token

    def _expression(self) -> str:
        """Terms joined by AND / NOT into runs, runs joined by OR (each run parenthesized when there are several)."""
        runs: list[list[str]] = [[self._operand(after=None)]]
        while (token := self._peek()) not in (None, ")"):
            if token == "OR":
                self._next()
                runs.append([self._operand(after="OR")])
                continue
            operator = "AND"
            if token in ("AND", "NOT", "ANDNOT"):
                self._next()
                negated = token != "AND"
                if token == "AND" and self._peek() == "NOT":
                    self._next()
                    negated = True
                operator = self.language.not_operator if negated else "AND"
            runs[-1].append(f"{operator} {self._operand(after=operator)}")
        if len(runs) == 1:
            return " ".join(runs[0])
        return " OR ".join(f"({' '.join(run)})" if len(run) > 1 else run[0] for run in runs)

    def _operand(self, after: str | None) -> str:
        token = self._next()
        if isinstance(token, tuple):
            return token[1]
        if token == "(":
            if self._peek() == ")":
                self._refuse("`()` holds no word")
            inner = self._expression()
            if self._next() != ")":
                self._refuse("a `(` is not closed")
            return f"({inner})" if self.language.is_compound(inner) else inner
        if token in ("NOT", "ANDNOT"):
            self._refuse(f"{self.language.provider}'s NOT needs a term before it (`a NOT b`): put NOT between two terms")
        where = f"after {after}" if after else "at the start" if token != ")" else "before `)`"
        shown = "the end" if token is None else f"`{token}`"
        self._refuse(f"a term is missing {where} (found {shown}); every AND, OR and NOT needs a term on each side")
