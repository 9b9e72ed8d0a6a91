"""A small, real KQL evaluator over lists of dict rows (the emulator's Resource Graph engine).

Why our own: `duckdb-kql` (PyPI) runs KQL well but transpiles to DuckDB SQL, which would add
duckdb + antlr4 + pytz to the test dependencies, re-ingest every ARM document into a typed
table per query and hand dynamic values back as JSON text. The project's queries use a small
subset, so a tokenizer + recursive-descent parser + closure compiler is enough and keeps the
emulator dependency-free.

Supported (see `execute`): table `Resources` (any case; a query may also start with an operator,
which ARG reads as `Resources | ...`), `where`, `project`, `project-away`, `project-rename`,
`extend`, `mv-expand`, `order by`/`sort by`, `take`/`limit`, `top`, `summarize`, `join`,
`distinct`, `count`; the scalar operators and functions in `_FUNCTIONS` / `_BINARY`.
Anything else raises `KqlError` with an ARG error code, which the service returns as 400.

Semantics follow Kusto where our queries can tell the difference: column names are
case-sensitive; a comparison with null is null and `where` keeps only true; `tostring(null)` is
""; `mv-expand` of an empty array drops the row, of null keeps it with null; `join` defaults
to `innerunique` and renames clashing right-hand columns `x1`, `x2`, ...
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class KqlError(Exception):
    """A query that cannot run. `code` is the ARG error-detail code."""

    def __init__(self, message: str, code: str = "InvalidQueryLanguage", *, line: int = -1,
                 column: int = -1, token: str | None = None):
        super().__init__(message)
        self.message = message
        self.code = code
        self.line = line
        self.column = column
        self.token = token


# ---------------------------------------------------------------------------------------------
# Tokenizer

@dataclass(frozen=True)
class Tok:
    kind: str  # ident, str, num, op, eof
    value: Any
    pos: int
    line: int
    col: int
    end: int = 0  # position just after the token (hyphenated operator names need adjacency)


_OPS = sorted(["==", "!=", "=~", "!~", "<=", ">=", "<", ">", "=", "|", "(", ")", "[", "]", ",",
               ".", "+", "-", "*", "/", "%", "$", "!", ";", ":", "{", "}", "~"],
              key=len, reverse=True)
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(\d+\.\d*|\.\d+|\d+)([eE][+-]?\d+)?")


def tokenize(text: str) -> list[Tok]:
    toks: list[Tok] = []
    i, n = 0, len(text)

    def where(p: int) -> tuple[int, int]:
        line = text.count("\n", 0, p) + 1
        return line, p - (text.rfind("\n", 0, p) + 1)

    while i < n:
        c = text[i]
        if c.isspace():
            i += 1
            continue
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            continue
        line, col = where(i)
        if c in "'\"" or (c == "@" and i + 1 < n and text[i + 1] in "'\""):
            verbatim = c == "@"
            q = text[i + 1] if verbatim else c
            j = i + (2 if verbatim else 1)
            buf = []
            while True:
                if j >= n:
                    raise KqlError("Unterminated string literal", "ParserFailure", line=line,
                                   column=col, token=text[i:i + 10])
                ch = text[j]
                if ch == q:
                    j += 1
                    break
                if ch == "\\" and not verbatim and j + 1 < n:
                    nxt = text[j + 1]
                    buf.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
                    j += 2
                    continue
                buf.append(ch)
                j += 1
            toks.append(Tok("str", "".join(buf), i, line, col, j))
            i = j
            continue
        m = _NUMBER.match(text, i)
        if c.isdigit() or (c == "." and m):
            s = m.group(0)
            val: Any = float(s) if any(x in s for x in ".eE") else int(s)
            toks.append(Tok("num", val, i, line, col, m.end()))
            i = m.end()
            continue
        m = _IDENT.match(text, i)
        if m:
            toks.append(Tok("ident", m.group(0), i, line, col, m.end()))
            i = m.end()
            continue
        for op in _OPS:
            if text.startswith(op, i):
                toks.append(Tok("op", op, i, line, col, i + len(op)))
                i += len(op)
                break
        else:
            raise KqlError(f"Unexpected character {c!r}", "ParserFailure", line=line, column=col,
                           token=c)
    line, col = where(n)
    toks.append(Tok("eof", None, n, line, col, n))
    return toks


# ---------------------------------------------------------------------------------------------
# AST (plain tuples keep the parser short): expressions are
#   ("lit", v) ("col", name) ("side", "left"|"right", name) ("member", base, key-expr)
#   ("call", name, [args]) ("bin", op, a, b) ("neg", a) ("in", op, a, [items])

@dataclass
class Op:
    name: str
    args: dict = field(default_factory=dict)
    tok: Tok | None = None


@dataclass
class Query:
    table: str
    tok: Tok
    ops: list[Op]


_STRING_OPS = {"has", "contains", "startswith", "endswith", "has_cs", "contains_cs",
               "startswith_cs", "endswith_cs"}

class Parser:
    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # -- token helpers
    @property
    def tok(self) -> Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def fail(self, what: str, tok: Tok | None = None) -> KqlError:
        t = tok or self.tok
        shown = "<EOF>" if t.kind == "eof" else str(t.value)
        return KqlError(f"{what} (found {shown!r} at line {t.line}, position {t.col})",
                        "ParserFailure", line=t.line, column=t.col, token=shown)

    def at(self, kind: str, value: Any = None) -> bool:
        t = self.tok
        return t.kind == kind and (value is None or t.value == value)

    def at_word(self, *words: str) -> bool:
        return self.tok.kind == "ident" and self.tok.value in words

    def take(self, kind: str, value: Any = None) -> Tok:
        if not self.at(kind, value):
            raise self.fail(f"Expected {value or kind}")
        t = self.tok
        self.i += 1
        return t

    def accept(self, kind: str, value: Any = None) -> Tok | None:
        if self.at(kind, value):
            return self.take(kind, value)
        return None

    def ident(self) -> str:
        return self.take("ident").value

    def hyphen_word(self) -> tuple[str, Tok]:
        """An operator name such as `project-away` or `mv-expand` (hyphen with no spaces)."""
        first = self.take("ident")
        name, end = first.value, first.end
        while (self.at("op", "-") and self.tok.pos == end and self.peek().kind == "ident"
               and self.peek().pos == end + 1):
            self.i += 1
            nxt = self.take("ident")
            name, end = f"{name}-{nxt.value}", nxt.end
        return name, first

    # -- queries
    def parse(self) -> Query:
        q = self.query()
        self.accept("op", ";")
        if not self.at("eof"):
            raise self.fail("Unexpected text after the query")
        return q

    def query(self) -> Query:
        start = self.tok
        ops: list[Op] = []
        nxt = self.peek()
        starts_with_operator = start.kind == "ident" and (
            start.value in ("where", "project", "extend", "summarize", "order", "sort", "take",
                            "limit", "top", "distinct", "count", "join", "mv", "mvexpand",
                            "filter")
            and not (nxt.kind == "op" and nxt.value in ("|", ")"))) or start.value == "count"
        if starts_with_operator:
            table = "Resources"  # ARG reads a query that starts with an operator as Resources | ...
            ops.append(self.operator())
        else:
            if not self.at("ident"):
                raise self.fail("Expected a table name")
            table = self.ident()
        while self.accept("op", "|"):
            ops.append(self.operator())
        return Query(table, start, ops)

    def operator(self) -> Op:
        name, tok = self.hyphen_word()
        low = name.lower()
        if low != name:
            raise KqlError(f"Unknown operator '{name}' (operators are lower case)",
                           line=tok.line, column=tok.col, token=name)
        handler = getattr(self, "op_" + low.replace("-", "_"), None)
        if handler is None:
            raise KqlError(f"The operator '{name}' is not supported", line=tok.line,
                           column=tok.col, token=name)
        op = handler()
        op.tok = tok
        return op

    def op_where(self) -> Op:
        return Op("where", {"pred": self.expr()})

    op_filter = op_where

    def named_list(self) -> list[tuple[str | None, tuple]]:
        items = []
        while True:
            name = None
            if self.at("ident") and self.peek().kind == "op" and self.peek().value == "=":
                name = self.ident()
                self.take("op", "=")
            items.append((name, self.expr()))
            if not self.accept("op", ","):
                return items

    def op_project(self) -> Op:
        return Op("project", {"items": self.named_list()})

    def op_extend(self) -> Op:
        return Op("extend", {"items": self.named_list()})

    def name_list(self) -> list[str]:
        names = []
        while True:
            t = self.take("ident")
            name = t.value
            while self.at("op", "*") and self.tok.pos == t.end:  # wildcard such as rg*
                t = self.take("op", "*")
                name += "*"
            names.append(name)
            if not self.accept("op", ","):
                return names

    def op_project_away(self) -> Op:
        return Op("project-away", {"names": self.name_list()})

    def op_project_rename(self) -> Op:
        pairs = []
        while True:
            new = self.ident()
            self.take("op", "=")
            pairs.append((new, self.ident()))
            if not self.accept("op", ","):
                return Op("project-rename", {"pairs": pairs})

    def op_mv_expand(self) -> Op:
        kind, index_col, limit = "bag", None, None
        while self.at_word("kind", "bagexpansion", "with_itemindex") and self.peek().value == "=":
            key = self.ident()
            self.take("op", "=")
            if key == "with_itemindex":
                index_col = self.ident()
            else:
                kind = self.ident()
        items = []
        while True:
            name = None
            if self.at("ident") and self.peek().kind == "op" and self.peek().value == "=":
                name = self.ident()
                self.take("op", "=")
            expr = self.expr()
            typ = None
            if self.at_word("to"):
                self.ident()
                if self.ident() != "typeof":
                    raise self.fail("Expected typeof")
                self.take("op", "(")
                typ = self.ident()
                self.take("op", ")")
            items.append((name, expr, typ))
            if not self.accept("op", ","):
                break
        if self.at_word("limit"):
            self.ident()
            limit = self.take("num").value
        return Op("mv-expand", {"items": items, "kind": kind, "index": index_col,
                                "limit": limit})

    op_mvexpand = op_mv_expand

    def sort_items(self) -> list[tuple[tuple, bool, bool | None]]:
        items = []
        while True:
            e = self.expr()
            desc = True  # Kusto sorts descending unless told otherwise
            if self.at_word("asc", "desc"):
                desc = self.ident() == "desc"
            nulls_first = None
            if self.at_word("nulls"):
                self.ident()
                w = self.ident()
                if w not in ("first", "last"):
                    raise self.fail("Expected first or last")
                nulls_first = w == "first"
            items.append((e, desc, nulls_first))
            if not self.accept("op", ","):
                return items

    def op_order(self) -> Op:
        if self.ident() != "by":
            raise self.fail("Expected 'by'", self.toks[self.i - 1])
        return Op("sort", {"items": self.sort_items()})

    op_sort = op_order

    def op_take(self) -> Op:
        return Op("take", {"n": self.expr()})

    op_limit = op_take

    def op_top(self) -> Op:
        n = self.expr()
        if self.ident() != "by":
            raise self.fail("Expected 'by'", self.toks[self.i - 1])
        return Op("top", {"n": n, "items": self.sort_items()})

    def op_summarize(self) -> Op:
        aggs: list = []
        if not self.at_word("by"):
            aggs = self.named_list()
        keys: list = []
        if self.at_word("by"):
            self.ident()
            keys = self.named_list()
        return Op("summarize", {"aggs": aggs, "keys": keys})

    def op_distinct(self) -> Op:
        if self.accept("op", "*"):
            return Op("distinct", {"names": None})
        return Op("distinct", {"names": self.name_list()})

    def op_count(self) -> Op:
        return Op("count")

    def op_join(self) -> Op:
        kind = "innerunique"
        while self.at("ident") and self.peek().kind == "op" and self.peek().value in "=.":
            key = self.ident()
            while self.accept("op", "."):  # hint.strategy=... and friends
                key += "." + self.ident()
            self.take("op", "=")
            value = self.take(self.tok.kind if self.tok.kind in ("ident", "num") else "ident")
            if key == "kind":
                kind = value.value
            # hint.* options are accepted and ignored: they only tune performance
        self.take("op", "(")
        right = self.query()
        self.take("op", ")")
        if self.ident() != "on":
            raise self.fail("Expected 'on'", self.toks[self.i - 1])
        conds = []
        while True:
            if self.at("op", "$"):
                a = self.primary()
                self.take("op", "==")
                b = self.primary()
                if a[0] != "side" or b[0] != "side" or a[1] == b[1]:
                    raise self.fail("A join condition compares $left.x with $right.y")
                left, rightc = (a, b) if a[1] == "left" else (b, a)
                conds.append((left[2], rightc[2]))
            else:
                col = self.ident()
                conds.append((col, col))
            if not (self.accept("op", ",") or (self.at_word("and") and self.ident())):
                break
        return Op("join", {"kind": kind, "right": right, "on": conds})

    # -- expressions (lowest precedence first)
    def expr(self) -> tuple:
        a = self.and_expr()
        while self.at_word("or"):
            self.ident()
            a = ("bin", "or", a, self.and_expr())
        return a

    def and_expr(self) -> tuple:
        a = self.not_free_cmp()
        while self.at_word("and"):
            self.ident()
            a = ("bin", "and", a, self.not_free_cmp())
        return a

    def not_free_cmp(self) -> tuple:
        a = self.additive()
        t = self.tok
        if t.kind == "op" and t.value in ("==", "!=", "=~", "!~", "<", "<=", ">", ">="):
            self.i += 1
            return ("bin", t.value, a, self.additive())
        negate = False
        if t.kind == "op" and t.value == "!" and self.peek().kind == "ident" \
                and self.peek().pos == t.pos + 1:
            self.i += 1
            negate = True
            t = self.tok
        if t.kind == "ident" and t.value in _STRING_OPS:
            self.i += 1
            op = ("!" if negate else "") + t.value
            return ("bin", op, a, self.additive())
        if t.kind == "ident" and t.value == "in":
            self.i += 1
            ci = self.at("op", "~") and self.tok.pos == self.toks[self.i - 1].end
            if ci:
                self.i += 1
            op = ("!" if negate else "") + ("in~" if ci else "in")
            self.take("op", "(")
            items = []
            if not self.at("op", ")"):
                while True:
                    items.append(self.expr())
                    if not self.accept("op", ","):
                        break
            self.take("op", ")")
            return ("in", op, a, items)
        if negate:
            raise self.fail("Unknown operator after '!'")
        return a

    def additive(self) -> tuple:
        a = self.multiplicative()
        while self.at("op", "+") or self.at("op", "-"):
            op = self.take("op").value
            a = ("bin", op, a, self.multiplicative())
        return a

    def multiplicative(self) -> tuple:
        a = self.unary()
        while self.at("op", "*") or self.at("op", "/") or self.at("op", "%"):
            op = self.take("op").value
            a = ("bin", op, a, self.unary())
        return a

    def unary(self) -> tuple:
        if self.accept("op", "-"):
            return ("neg", self.unary())
        return self.postfix(self.primary())

    def postfix(self, e: tuple) -> tuple:
        while True:
            if self.at("op", ".") and self.peek().kind == "ident":
                self.i += 1
                e = ("member", e, ("lit", self.ident()))
            elif self.accept("op", "["):
                e = ("member", e, self.expr())
                self.take("op", "]")
            else:
                return e

    def primary(self) -> tuple:
        t = self.tok
        if t.kind in ("str", "num"):
            self.i += 1
            return ("lit", t.value)
        if self.accept("op", "("):
            e = self.expr()
            self.take("op", ")")
            return e
        if self.accept("op", "$"):
            side = self.ident()
            if side not in ("left", "right"):
                raise self.fail("Expected $left or $right")
            self.take("op", ".")
            return ("side", side, self.ident())
        if t.kind == "ident":
            self.i += 1
            if t.value in ("true", "false"):
                return ("lit", t.value == "true")
            if self.at("op", "("):
                if t.value == "dynamic":
                    self.take("op", "(")
                    value = self.json_value()
                    self.take("op", ")")
                    return ("lit", value)
                self.take("op", "(")
                args = []
                if not self.at("op", ")"):
                    while True:
                        if self.at("op", "*") and t.value in ("count", "countif"):
                            self.i += 1
                        else:
                            args.append(self.expr())
                        if not self.accept("op", ","):
                            break
                self.take("op", ")")
                return ("call", t.value, args, t)
            return ("col", t.value, t)
        raise self.fail("Expected an expression")

    def json_value(self) -> Any:
        """The literal inside dynamic(...): JSON, with single quotes allowed as in Kusto."""
        if self.accept("op", "["):
            out = []
            while not self.accept("op", "]"):
                out.append(self.json_value())
                if not self.at("op", "]"):
                    self.take("op", ",")
            return out
        if self.accept("op", "{"):
            obj = {}
            while not self.accept("op", "}"):
                key = self.take("str").value
                self.take("op", ":")
                obj[key] = self.json_value()
                if not self.at("op", "}"):
                    self.take("op", ",")
            return obj
        if self.accept("op", "-"):
            return -self.take("num").value
        t = self.tok
        if t.kind in ("str", "num"):
            self.i += 1
            return t.value
        if t.kind == "ident" and t.value in ("true", "false", "null"):
            self.i += 1
            return {"true": True, "false": False, "null": None}[t.value]
        raise self.fail("Expected a dynamic literal")


def parse(text: str) -> Query:
    return Parser(text).parse()


# ---------------------------------------------------------------------------------------------
# Scalar semantics

def tostring(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"  # values here are dynamic: JSON spelling
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _is_num(a) and _is_num(b):
        return a == b
    if type(a) is type(b):
        return a == b
    return False


def _ieq(a: Any, b: Any) -> bool:
    return tostring(a).lower() == tostring(b).lower()


def _cmp(op: str, a: Any, b: Any) -> bool | None:
    if a is None or b is None:
        return None
    if (_is_num(a) and _is_num(b)) or (isinstance(a, str) and isinstance(b, str)):
        return {"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b}[op]
    return None


def _has(hay: Any, needle: Any, cs: bool = False) -> bool:
    """Kusto `has`: the needle occurs as whole term(s), i.e. not inside a longer word."""
    h, nd = tostring(hay), tostring(needle)
    if not cs:
        h, nd = h.lower(), nd.lower()
    if nd == "":
        return True
    start = 0
    while (i := h.find(nd, start)) >= 0:
        before = h[i - 1] if i else " "
        j = i + len(nd)
        after = h[j] if j < len(h) else " "
        if not (before.isalnum() and nd[0].isalnum()) and not (after.isalnum()
                                                                and nd[-1].isalnum()):
            return True
        start = i + 1
    return False


def _string_op(op: str, a: Any, b: Any) -> bool:
    neg = op.startswith("!")
    base = op.lstrip("!")
    cs = base.endswith("_cs")
    base = base.removesuffix("_cs")
    if base == "has":
        r = _has(a, b, cs)
    else:
        x, y = tostring(a), tostring(b)
        if not cs:
            x, y = x.lower(), y.lower()
        r = {"contains": y in x, "startswith": x.startswith(y), "endswith": x.endswith(y)}[base]
    return not r if neg else r


def _truth(v: Any) -> bool:
    return v is True


def _and(a: Any, b: Any) -> bool | None:
    if a is False or b is False:
        return False
    if a is True and b is True:
        return True
    return None


def _or(a: Any, b: Any) -> bool | None:
    if a is True or b is True:
        return True
    if a is False and b is False:
        return False
    return None


def _arith(op: str, a: Any, b: Any) -> Any:
    if not (_is_num(a) and _is_num(b)):
        return None
    try:
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            if isinstance(a, int) and isinstance(b, int):
                return int(a / b)  # Kusto long division truncates toward zero
            return a / b
        if op == "%":
            return a - b * int(a / b)
    except ZeroDivisionError:
        return None
    raise AssertionError(op)


def _member(base: Any, key: Any) -> Any:
    if isinstance(base, dict) and isinstance(key, str):
        return base.get(key)
    if isinstance(base, list) and _is_num(key) and float(key).is_integer():
        k = int(key)
        if -len(base) <= k < len(base):
            return base[k]
    return None


def _toint(v: Any) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool):
        return int(v)
    if _is_num(v):
        return int(v)
    if isinstance(v, str):
        try:
            return int(v.strip())
        except ValueError:
            try:
                return int(float(v.strip()))
            except ValueError:
                return None
    return None


def _todouble(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if _is_num(v):
        return float(v)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            return None
    return None


def _tobool(v: Any) -> bool | None:
    if isinstance(v, bool):
        return v
    if _is_num(v):
        return v != 0
    if isinstance(v, str):
        return {"true": True, "false": False, "1": True, "0": False}.get(v.strip().lower())
    return None


def _todynamic(v: Any) -> Any:
    if isinstance(v, str):
        try:
            return json.loads(v)
        except ValueError:
            return v
    return v


def _isempty(v: Any) -> bool:
    return v is None or v == ""


def _coalesce(*args: Any) -> Any:
    for a in args:
        if not _isempty(a):
            return a
    return args[-1] if args else None


def _substring(s: Any, start: Any, length: Any = None) -> str:
    text, st = tostring(s), _toint(start) or 0
    st = max(st, 0)
    if length is None:
        return text[st:]
    return text[st:st + max(_toint(length) or 0, 0)]


def _split(s: Any, delim: Any, index: Any = None) -> Any:
    parts = tostring(s).split(tostring(delim)) if tostring(delim) else [tostring(s)]
    if index is None:
        return parts
    i = _toint(index)
    return [parts[i]] if i is not None and 0 <= i < len(parts) else []


def _bag_pack(args: tuple) -> dict:
    """bag_pack(key1, value1, key2, value2, ...): a property bag (keys are strings)."""
    if len(args) % 2:
        raise KqlError("bag_pack(): expects an even number of arguments (key, value pairs)",
                       "InvalidQueryLanguage")
    keys = args[0::2]
    if not all(isinstance(k, str) for k in keys):
        raise KqlError("bag_pack(): keys must be strings", "InvalidQueryLanguage")
    return dict(zip(keys, args[1::2], strict=True))


# name -> (min args, max args, implementation over evaluated args)
_FUNCTIONS: dict[str, tuple[int, int, Callable[..., Any]]] = {
    "tostring": (1, 1, tostring),
    "toint": (1, 1, _toint),
    "tolong": (1, 1, _toint),
    "todouble": (1, 1, _todouble),
    "toreal": (1, 1, _todouble),
    "tobool": (1, 1, _tobool),
    "toboolean": (1, 1, _tobool),
    "todynamic": (1, 1, _todynamic),
    "parse_json": (1, 1, _todynamic),
    "tolower": (1, 1, lambda v: tostring(v).lower()),
    "toupper": (1, 1, lambda v: tostring(v).upper()),
    "strlen": (1, 1, lambda v: len(tostring(v))),
    "substring": (2, 3, _substring),
    "split": (2, 3, _split),
    "strcat": (1, 64, lambda *a: "".join(tostring(x) for x in a)),
    "array_length": (1, 1, lambda v: len(v) if isinstance(v, list) else None),
    "pack_array": (0, 64, lambda *a: list(a)),
    "bag_pack": (0, 128, lambda *a: _bag_pack(a)),
    "pack": (0, 128, lambda *a: _bag_pack(a)),  # the deprecated name of bag_pack
    "bag_keys": (1, 1, lambda v: list(v) if isinstance(v, dict) else None),
    "isempty": (1, 1, _isempty),
    "isnotempty": (1, 1, lambda v: not _isempty(v)),
    "isnull": (1, 1, lambda v: v is None),
    "isnotnull": (1, 1, lambda v: v is not None),
    "not": (1, 1, lambda v: None if v is None else not _truth(v)),
    "iff": (3, 3, lambda c, a, b: a if _truth(c) else b),
    "iif": (3, 3, lambda c, a, b: a if _truth(c) else b),
    "coalesce": (1, 64, _coalesce),
}

# Conversions whose unnamed result keeps the name of their argument, as Kusto names them.
_NAME_THROUGH = {"tostring", "toint", "tolong", "todouble", "toreal", "tobool", "toboolean",
                 "todynamic", "parse_json", "tolower", "toupper"}

# Aggregates summarize accepts (folded by _Agg; output names from _agg_name)
_AGGREGATES = {"count", "countif", "dcount", "make_list", "make_set", "min", "max", "sum", "avg",
               "take_any", "any"}


# ---------------------------------------------------------------------------------------------
# Tables and compilation

@dataclass
class Table:
    columns: list[str]
    rows: list[dict]


Row = dict
Fn = Callable[[Row], Any]


def _sem(message: str, tok: Tok | None = None, code: str = "InvalidQueryLanguage") -> KqlError:
    return KqlError(message, code, line=tok.line if tok else -1, column=tok.col if tok else -1,
                    token=None)


def compile_expr(e: tuple, columns: list[str]) -> Fn:
    kind = e[0]
    if kind == "lit":
        v = e[1]
        return lambda r: v
    if kind == "col":
        name = e[1]
        if name not in columns:
            raise _sem(f"Failed to resolve scalar expression named '{name}'", e[2],
                       "FailedToResolveColumn")
        return lambda r: r.get(name)
    if kind == "side":
        raise _sem("$left/$right may only appear in a join's on clause")
    if kind == "member":
        base, key = compile_expr(e[1], columns), compile_expr(e[2], columns)
        return lambda r: _member(base(r), key(r))
    if kind == "neg":
        a = compile_expr(e[1], columns)
        return lambda r: -v if _is_num(v := a(r)) else None
    if kind == "in":
        op, a, items = e[1], compile_expr(e[2], columns), [compile_expr(x, columns)
                                                           for x in e[3]]
        ci, neg = op.endswith("~"), op.startswith("!")

        def in_fn(r: Row) -> bool | None:
            v = a(r)
            values = []
            for f in items:
                x = f(r)
                values.extend(x if isinstance(x, list) else [x])  # dynamic arrays flatten
            if ci:
                found = any(_ieq(v, x) for x in values)
            else:
                found = any(_eq(v, x) is True for x in values)
            return not found if neg else found
        return in_fn
    if kind == "bin":
        op, a, b = e[1], compile_expr(e[2], columns), compile_expr(e[3], columns)
        if op == "and":
            return lambda r: _and(a(r), b(r))
        if op == "or":
            return lambda r: _or(a(r), b(r))
        if op == "==":
            return lambda r: _eq(a(r), b(r))
        if op == "!=":
            return lambda r: None if (x := _eq(a(r), b(r))) is None else not x
        if op == "=~":
            return lambda r: _ieq(a(r), b(r))
        if op == "!~":
            return lambda r: not _ieq(a(r), b(r))
        if op in ("<", "<=", ">", ">="):
            return lambda r: _cmp(op, a(r), b(r))
        if op in ("+", "-", "*", "/", "%"):
            return lambda r: _arith(op, a(r), b(r))
        return lambda r: _string_op(op, a(r), b(r))
    if kind == "call":
        name, args, tok = e[1], e[2], e[3]
        if name in _AGGREGATES and name not in _FUNCTIONS:
            raise _sem(f"Aggregate function '{name}' can only be used in summarize", tok,
                       "UnknownFunction")
        spec = _FUNCTIONS.get(name)
        if spec is None:
            raise _sem(f"Unknown function: '{name}'", tok, "UnknownFunction")
        lo, hi, impl = spec
        if not lo <= len(args) <= hi:
            raise _sem(f"Function '{name}' expects {lo}..{hi} arguments, got {len(args)}", tok)
        fns = [compile_expr(x, columns) for x in args]
        return lambda r: impl(*(f(r) for f in fns))
    raise AssertionError(e)


def infer_name(e: tuple) -> str | None:
    """Kusto's name for an unnamed projected expression (None: it gets ColumnN)."""
    if e[0] == "col":
        return e[1]
    if e[0] == "member" and e[2][0] == "lit" and isinstance(e[2][1], str):
        base = infer_name(e[1])
        return f"{base}_{e[2][1]}" if base else None
    if e[0] == "call" and e[1] in _NAME_THROUGH and e[2]:
        return infer_name(e[2][0])
    return None


def _named(items: list, start: int = 1) -> list[tuple[str, tuple]]:
    out, n = [], start
    for name, e in items:
        if name is None:
            name = infer_name(e)
            if name is None:
                name = f"Column{n}"
                n += 1
        out.append((name, e))
    return out


def _freeze(v: Any) -> Any:
    """A hashable stand-in for a value (group-by and join keys)."""
    if isinstance(v, (dict, list)):
        return ("json", json.dumps(v, sort_keys=True))
    if _is_num(v):
        return ("num", float(v))
    return (type(v).__name__, v)


def _sort_key(v: Any) -> tuple:
    if isinstance(v, bool):
        return (1, float(v))
    if _is_num(v):
        return (1, float(v))
    if isinstance(v, str):
        return (2, v)
    return (3, json.dumps(v, sort_keys=True))


def _sort(rows: list[Row], items: list[tuple[Fn, bool, bool | None]]) -> list[Row]:
    rows = list(rows)
    for fn, desc, nulls_first in reversed(items):  # stable sorts, least significant key first
        if nulls_first is None:
            nulls_first = not desc  # Kusto: asc -> nulls first, desc -> nulls last
        null_rank = 0 if nulls_first != desc else 1

        def key(r: Row, fn: Fn = fn, null_rank: int = null_rank) -> tuple:
            v = fn(r)
            return (null_rank, (0, 0.0)) if v is None else (1 - null_rank, _sort_key(v))
        rows.sort(key=key, reverse=desc)
    return rows


class _Agg:
    """One aggregate column: fold values group by group."""

    def __init__(self, name: str, args: list[tuple], columns: list[str], tok: Tok | None):
        self.kind = name
        self.fns = [compile_expr(a, columns) for a in args]
        need = {"count": 0, "countif": 1}.get(name, 1)
        if len(args) != need:
            raise _sem(f"Aggregate '{name}' expects {need} argument(s)", tok)

    def init(self) -> Any:
        return {"count": 0, "countif": 0, "sum": None, "min": None, "max": None}.get(
            self.kind, [])

    def step(self, acc: Any, r: Row) -> Any:
        k = self.kind
        if k == "count":
            return acc + 1
        v = self.fns[0](r)
        if k == "countif":
            return acc + (1 if _truth(v) else 0)
        if k in ("sum", "avg"):
            if not _is_num(v):
                return acc
            if k == "avg":
                acc.append(v)
                return acc
            return v if acc is None else acc + v
        if k in ("min", "max"):
            if v is None:
                return acc
            if acc is None:
                return v
            better = _sort_key(v) < _sort_key(acc) if k == "min" else _sort_key(v) > _sort_key(
                acc)
            return v if better else acc
        if k in ("take_any", "any"):
            if not acc and v is not None:
                acc.append(v)
            return acc
        if v is not None:  # make_list, make_set, dcount collect non-null values
            acc.append(v)
        return acc

    def final(self, acc: Any) -> Any:
        k = self.kind
        if k == "avg":
            return sum(acc) / len(acc) if acc else None
        if k in ("take_any", "any"):
            return acc[0] if acc else None
        if k in ("make_set", "dcount"):
            seen, out = set(), []
            for v in acc:
                f = _freeze(v)
                if f not in seen:
                    seen.add(f)
                    out.append(v)
            return len(out) if k == "dcount" else out
        return acc


def _cast(typ: str, v: Any, tok: Tok | None) -> Any:
    if typ == "dynamic":
        return v
    if typ == "string":
        return v if isinstance(v, str) else None
    if typ in ("long", "int"):
        return v if _is_num(v) and float(v).is_integer() else None
    if typ in ("real", "double"):
        return float(v) if _is_num(v) else None
    if typ in ("bool", "boolean"):
        return v if isinstance(v, bool) else None
    raise _sem(f"mv-expand: unsupported type '{typ}'", tok)


def _agg_name(name: str | None, e: tuple) -> str:
    if name:
        return name
    fname, args = e[1], e[2]
    arg = infer_name(args[0]) if args else None
    if fname in ("count", "countif"):
        return f"{fname}_"
    if fname in ("take_any", "any"):
        return arg or "any_"
    prefix = {"make_list": "list", "make_set": "set"}.get(fname, fname)
    return f"{prefix}_{arg}" if arg else f"{prefix}_"


def _unique(name: str, taken: set[str]) -> str:
    if name not in taken:
        return name
    n = 1
    while f"{name}{n}" in taken:
        n += 1
    return f"{name}{n}"


class Evaluator:
    def __init__(self, tables: dict[str, list[dict]],
                 schemas: dict[str, list[str]] | None = None, max_rows: int = 1_000_000):
        # ARG table names are case-insensitive. A table's columns are its schema (so an empty
        # table still has them) followed by any other key its rows carry.
        self.tables = {k.lower(): v for k, v in tables.items()}
        self.schemas = {k.lower(): v for k, v in (schemas or {}).items()}
        self.max_rows = max_rows

    def run(self, q: Query) -> Table:
        rows = self.tables.get(q.table.lower())
        if rows is None:
            raise KqlError(f"Table '{q.table}' is not supported", line=q.tok.line,
                           column=q.tok.col, token=q.table)
        columns: list[str] = list(self.schemas.get(q.table.lower(), []))
        seen: set[str] = set(columns)
        for r in rows:
            for k in r:
                if k not in seen:
                    seen.add(k)
                    columns.append(k)
        t = Table(columns, list(rows))
        for op in q.ops:
            t = getattr(self, "do_" + op.name.replace("-", "_"))(t, op)
            if len(t.rows) > self.max_rows:
                raise KqlError(f"The query produced more than {self.max_rows} rows",
                               "ResultTooLarge")
        return t

    def do_where(self, t: Table, op: Op) -> Table:
        pred = compile_expr(op.args["pred"], t.columns)
        return Table(t.columns, [r for r in t.rows if _truth(pred(r))])

    def do_project(self, t: Table, op: Op) -> Table:
        items = [(n, compile_expr(e, t.columns)) for n, e in _named(op.args["items"])]
        names = [n for n, _ in items]
        if len(set(names)) != len(names):
            raise _sem(f"project: duplicate column name in {names}", op.tok)
        return Table(names, [{n: f(r) for n, f in items} for r in t.rows])

    def do_extend(self, t: Table, op: Op) -> Table:
        columns, rows = list(t.columns), t.rows
        # Each item sees the columns defined by the items before it, as in Kusto.
        for n, e in _named(op.args["items"], start=len(columns) + 1):
            f = compile_expr(e, columns)
            rows = [{**r, n: f(r)} for r in rows]
            if n not in columns:
                columns.append(n)
        return Table(columns, rows)

    def do_project_away(self, t: Table, op: Op) -> Table:
        drop = set()
        for pat in op.args["names"]:
            hits = [c for c in t.columns if fnmatch.fnmatchcase(c, pat)]
            if not hits and "*" not in pat:
                raise _sem(f"project-away: column '{pat}' does not exist", op.tok,
                           "FailedToResolveColumn")
            drop.update(hits)
        keep = [c for c in t.columns if c not in drop]
        return Table(keep, [{c: r.get(c) for c in keep} for r in t.rows])

    def do_project_rename(self, t: Table, op: Op) -> Table:
        mapping = {}
        for new, old in op.args["pairs"]:
            if old not in t.columns:
                raise _sem(f"project-rename: column '{old}' does not exist", op.tok,
                           "FailedToResolveColumn")
            mapping[old] = new
        cols = [mapping.get(c, c) for c in t.columns]
        return Table(cols, [{mapping.get(k, k): v for k, v in r.items()} for r in t.rows])

    def do_mv_expand(self, t: Table, op: Op) -> Table:
        items = []
        for name, e, typ in op.args["items"]:
            if name is None:
                name = infer_name(e)
                if name is None:
                    raise _sem("mv-expand needs a name for an expression", op.tok)
            items.append((name, compile_expr(e, t.columns), typ))
        limit, index_col, as_array = op.args["limit"], op.args["index"], op.args["kind"] == "array"
        columns = list(t.columns)
        for name, _, _ in items:
            if name not in columns:
                columns.append(name)
        if index_col and index_col not in columns:
            columns.append(index_col)
        out = []
        for r in t.rows:
            expanded = []
            for _, f, typ in items:
                v = f(r)
                if isinstance(v, list):
                    vals = v
                elif isinstance(v, dict):
                    vals = [[k, x] if as_array else {k: x} for k, x in v.items()]
                else:
                    vals = [v]  # a scalar or null expands to itself (one row)
                if typ is not None:  # `to typeof(T)` casts; elements of another type -> null
                    vals = [_cast(typ, x, op.tok) for x in vals]
                expanded.append(vals)
            n = max(len(v) for v in expanded)
            if limit is not None:
                n = min(n, limit)
            for i in range(n):
                row = dict(r)
                for (name, _, _), vals in zip(items, expanded, strict=True):
                    row[name] = vals[i] if i < len(vals) else None
                if index_col:
                    row[index_col] = i
                out.append(row)
        return Table(columns, out)

    def _sort_items(self, t: Table, items: list) -> list:
        return [(compile_expr(e, t.columns), desc, nf) for e, desc, nf in items]

    def do_sort(self, t: Table, op: Op) -> Table:
        return Table(t.columns, _sort(t.rows, self._sort_items(t, op.args["items"])))

    def _count_arg(self, t: Table, op: Op) -> int:
        n = compile_expr(op.args["n"], [])({})
        if not _is_num(n) or n < 0:
            raise _sem("take/limit/top expects a non-negative number", op.tok)
        return int(n)

    def do_take(self, t: Table, op: Op) -> Table:
        return Table(t.columns, t.rows[:self._count_arg(t, op)])

    def do_top(self, t: Table, op: Op) -> Table:
        n = self._count_arg(t, op)
        return Table(t.columns, _sort(t.rows, self._sort_items(t, op.args["items"]))[:n])

    def do_count(self, t: Table, op: Op) -> Table:
        return Table(["Count"], [{"Count": len(t.rows)}])

    def do_distinct(self, t: Table, op: Op) -> Table:
        names = op.args["names"] or t.columns
        for n in names:
            if n not in t.columns:
                raise _sem(f"distinct: column '{n}' does not exist", op.tok,
                           "FailedToResolveColumn")
        seen, out = set(), []
        for r in t.rows:
            key = tuple(_freeze(r.get(n)) for n in names)
            if key not in seen:
                seen.add(key)
                out.append({n: r.get(n) for n in names})
        return Table(list(names), out)

    def do_summarize(self, t: Table, op: Op) -> Table:
        keys = [(n, compile_expr(e, t.columns)) for n, e in _named(op.args["keys"])]
        aggs = []
        for name, e in op.args["aggs"]:
            if e[0] != "call" or e[1] not in _AGGREGATES:
                raise _sem("summarize expects aggregate functions such as count()", op.tok)
            aggs.append((_agg_name(name, e), _Agg(e[1], e[2], t.columns, e[3])))
        names = [n for n, _ in keys] + [n for n, _ in aggs]
        if len(set(names)) != len(names):
            raise _sem(f"summarize: duplicate column name in {names}", op.tok)
        groups: dict[tuple, tuple[list, list]] = {}
        for r in t.rows:
            kv = [f(r) for _, f in keys]
            g = tuple(_freeze(v) for v in kv)
            if g not in groups:
                groups[g] = (kv, [a.init() for _, a in aggs])
            accs = groups[g][1]
            for i, (_, a) in enumerate(aggs):
                accs[i] = a.step(accs[i], r)
        if not keys and not groups:  # a summarize with no by over no rows still yields one row
            groups[()] = ([], [a.init() for _, a in aggs])
        out = []
        for kv, accs in groups.values():
            row = {n: v for (n, _), v in zip(keys, kv, strict=True)}
            for (n, a), acc in zip(aggs, accs, strict=True):
                row[n] = a.final(acc)
            out.append(row)
        return Table(names, out)

    def do_join(self, t: Table, op: Op) -> Table:
        kind = op.args["kind"]
        if kind not in ("inner", "innerunique", "leftouter", "leftanti", "leftsemi"):
            raise KqlError(f"join kind '{kind}' is not supported", line=op.tok.line,
                           column=op.tok.col, token=kind)
        right = self.run(op.args["right"])
        for lc, rc in op.args["on"]:
            if lc not in t.columns:
                raise _sem(f"join: left side has no column '{lc}'", op.tok,
                           "FailedToResolveColumn")
            if rc not in right.columns:
                raise _sem(f"join: right side has no column '{rc}'", op.tok,
                           "FailedToResolveColumn")
        lkeys = [lc for lc, _ in op.args["on"]]
        rkeys = [rc for _, rc in op.args["on"]]

        def key(r: Row, cols: list[str]) -> tuple | None:
            vals = [r.get(c) for c in cols]
            return None if any(v is None for v in vals) else tuple(_freeze(v) for v in vals)

        index: dict[tuple, list[Row]] = {}
        for r in right.rows:
            k = key(r, rkeys)
            if k is not None:
                index.setdefault(k, []).append(r)
        left_rows = t.rows
        if kind == "innerunique":  # Kusto keeps the first left row of each key
            seen, left_rows = set(), []
            for r in t.rows:
                k = key(r, lkeys)
                if k not in seen:
                    seen.add(k)
                    left_rows.append(r)
        if kind in ("leftanti", "leftsemi"):
            want = kind == "leftsemi"
            return Table(t.columns, [r for r in t.rows if (key(r, lkeys) in index) == want])
        taken = set(t.columns)
        rename = {}
        for c in right.columns:
            rename[c] = _unique(c, taken)
            taken.add(rename[c])
        columns = t.columns + [rename[c] for c in right.columns]
        out = []
        for r in left_rows:
            matches = index.get(key(r, lkeys), [])
            for m in matches:
                out.append({**r, **{rename[c]: m.get(c) for c in right.columns}})
            if not matches and kind == "leftouter":
                out.append({**r, **{rename[c]: None for c in right.columns}})
        return Table(columns, out)


def execute(query: str, tables: dict[str, list[dict]],
            schemas: dict[str, list[str]] | None = None) -> Table:
    """Parse and run `query` over `tables` (name -> rows). Raises KqlError."""
    return Evaluator(tables, schemas).run(parse(query))


def has_limit(q: Query) -> bool:
    """Whether the query uses take/limit/top (ARG then cannot page the result)."""
    return any(op.name in ("take", "top") for op in _all_ops(q))


def _all_ops(q: Query) -> list[Op]:
    ops = []
    for op in q.ops:
        ops.append(op)
        if op.name == "join":
            ops.extend(_all_ops(op.args["right"]))
    return ops
