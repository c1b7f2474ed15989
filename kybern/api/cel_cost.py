"""Static analysis of CEL validation rules: a small parser for CEL's grammar (only for analysis;
compiling and evaluating is the CEL library's job in `kybern.api.cel`), whether a rule uses
`oldSelf` (a transition rule), and a worst-case cost estimate in the spirit of Kubernetes' —
sizes come from the schema's maxItems/maxLength/maxProperties, or from the 3 MiB request limit
when unbounded — so that a CRD whose rules could run away is refused when it is written."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from kybern.api import crdschema

PER_CALL_LIMIT = 1_000_000  # Kubernetes' per-expression cost limit
CRD_TOTAL_LIMIT = 100_000_000  # all rules of a CRD version, times how often each runs
MAX_REQUEST = 3 * 1024 * 1024

_TOKEN = re.compile(
    r"""\s*(?:
    (?P<num>0x[0-9a-fA-F]+u?|\d+\.\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|\d+[eE][+-]?\d+|\d+u?)
    |(?P<str>[rR]?[bB]?[rR]?("""
    r"""\"\"\"[\s\S]*?\"\"\"|'''[\s\S]*?'''|"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
    |(?P<id>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>\|\||&&|==|!=|<=|>=|\.\?|\[\?|[-+*/%!<>?:.,()\[\]{}])
    )""",
    re.X,
)


class ParseError(ValueError):
    pass


Ast = tuple[Any, ...]


def tokenize(src: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    src = src.rstrip()
    while pos < len(src):
        m = _TOKEN.match(src, pos)
        if m is None or m.end() == pos:
            raise ParseError(f"unexpected character at {pos}")
        pos = m.end()
        kind = m.lastgroup or ""
        if kind == "str" or m.group("str"):
            out.append(("str", m.group("str")))
        else:
            out.append((kind, m.group(kind)))
    out.append(("eof", ""))
    return out


class Parser:
    """Recursive descent over CEL's grammar into tuples: ("id", name), ("lit", kind, text),
    ("sel", operand, field), ("call", name, target|None, args), ("list", items),
    ("map", [(k, v)]), ("idx", operand, index)."""

    def __init__(self, src: str) -> None:
        self.toks = tokenize(src)
        self.i = 0

    def peek(self) -> tuple[str, str]:
        return self.toks[self.i]

    def take(self, text: str | None = None) -> tuple[str, str]:
        tok = self.toks[self.i]
        if text is not None and tok[1] != text:
            raise ParseError(f"expected {text!r}, got {tok[1]!r}")
        self.i += 1
        return tok

    def accept(self, text: str) -> bool:
        if self.toks[self.i][1] == text and self.toks[self.i][0] in ("op", "id"):
            self.i += 1
            return True
        return False

    def parse(self) -> Ast:
        e = self.expr()
        if self.peek()[0] != "eof":
            raise ParseError(f"unexpected {self.peek()[1]!r}")
        return e

    def expr(self) -> Ast:
        c = self.binary(0)
        if self.accept("?"):
            a = self.binary(0)
            self.take(":")
            b = self.expr()
            return ("call", "_?_:_", None, [c, a, b])
        return c

    _LEVELS = (("||",), ("&&",), ("<", "<=", ">", ">=", "==", "!=", "in"), ("+", "-"), "*/%")

    def binary(self, level: int) -> Ast:
        if level == len(self._LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            tok = self.peek()
            if tok[0] in ("op", "id") and tok[1] in self._LEVELS[level]:
                self.take()
                right = self.binary(level + 1)
                left = ("call", f"_{tok[1]}_", None, [left, right])
            else:
                return left

    def unary(self) -> Ast:
        if self.accept("!"):
            return ("call", "!_", None, [self.unary()])
        if self.accept("-"):
            return ("call", "-_", None, [self.unary()])
        return self.member()

    def member(self) -> Ast:
        e = self.primary()
        while True:
            if self.accept(".") or self.accept(".?"):
                name = self.take()[1]
                if self.accept("("):
                    e = ("call", name, e, self.args(")"))
                else:
                    e = ("sel", e, name)
            elif self.accept("[") or self.accept("[?"):
                idx = self.expr()
                self.take("]")
                e = ("idx", e, idx)
            elif self.peek()[1] == "{" and e[0] in ("id", "sel"):
                self.take("{")
                fields = []
                while not self.accept("}"):
                    self.accept("?")
                    self.take()
                    self.take(":")
                    fields.append(self.expr())
                    if not self.accept(","):
                        self.take("}")
                        break
                e = ("list", fields)
            else:
                return e

    def args(self, close: str) -> list[Ast]:
        out: list[Ast] = []
        if self.accept(close):
            return out
        while True:
            out.append(self.expr())
            if self.accept(close):
                return out
            self.take(",")
            if self.accept(close):
                return out

    def primary(self) -> Ast:
        kind, text = self.take()
        if kind == "num":
            return ("lit", "num", text)
        if kind == "str":
            return ("lit", "str", text)
        if kind == "id":
            if text in ("true", "false", "null"):
                return ("lit", text, text)
            if self.accept("("):
                return ("call", text, None, self.args(")"))
            return ("id", text)
        if text == ".":
            return self.primary()
        if text == "(":
            e = self.expr()
            self.take(")")
            return e
        if text == "[":
            return ("list", self.args("]"))
        if text == "{":
            entries: list[tuple[Ast, Ast]] = []
            while not self.accept("}"):
                self.accept("?")
                k = self.expr()
                self.take(":")
                entries.append((k, self.expr()))
                if not self.accept(","):
                    self.take("}")
                    break
            return ("map", entries)
        raise ParseError(f"unexpected {text!r}")


def parse(src: str) -> Ast:
    return Parser(src).parse()


def identifiers(ast: Ast) -> set[str]:
    """Every identifier the expression mentions (variables and comprehension variables)."""
    out: set[str] = set()
    stack: list[Any] = [ast]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple) and n:
            if n[0] == "id":
                out.add(n[1])
            else:
                stack.extend(n[1:])
        elif isinstance(n, list):
            stack.extend(n)
    return out


def self_fields(src: str) -> set[str] | None:
    """The fields of `self` a rule selects (`self.a`, `has(self.b)`), or None when it uses
    `self` as a whole (then all of it must be given to the rule)."""
    try:
        ast = parse(src)
    except ParseError:
        return None
    out: set[str] = set()
    stack: list[Any] = [ast]
    while stack:
        n = stack.pop()
        if isinstance(n, tuple) and n:
            if n[0] == "sel" and n[1] == ("id", "self"):
                out.add(n[2])
                continue
            if n == ("id", "self"):
                return None
            stack.extend(n[1:])
        elif isinstance(n, list):
            stack.extend(n)
    return out


def uses_old_self(src: str) -> bool:
    try:
        return "oldSelf" in identifiers(parse(src))
    except ParseError:
        return re.search(r"\boldSelf\b", src) is not None


# ---- cost estimation ----------------------------------------------------------------------------


@dataclass
class Est:
    """The abstract value of an expression: worst-case cost so far, worst-case size (lists,
    maps, strings, bytes), the schema of the value (if known) and the element estimate."""

    cost: float = 1.0
    size: float = 1.0
    node: crdschema.Node | None = None
    elem: Est | None = field(default=None, repr=False)


def _min_size(n: crdschema.Node | None) -> int:
    if n is None:
        return 1
    return {"string": 2, "boolean": 4, "object": 2, "array": 2}.get(n.type, 1)


def max_size(n: crdschema.Node | None, budget: float = MAX_REQUEST) -> float:
    """The largest size a value of schema `n` can have (items, properties or characters)."""
    if n is None:
        return budget
    if n.type == "array":
        if n.max_items is not None:
            return float(n.max_items)
        return math.floor(budget / (_min_size(n.items) + 1))
    if n.type == "object":
        if n.max_properties is not None:
            return float(n.max_properties)
        if n.properties is not None and n.additional is None:
            return float(len(n.properties))
        return math.floor(budget / (_min_size(n.additional) + 4))
    if n.type == "string":
        if n.max_length is not None:
            return float(n.max_length)
        return budget
    return 1.0


def _from_node(n: crdschema.Node | None, cost: float) -> Est:
    e = Est(cost, max_size(n), n)
    if n is not None and n.type == "array":
        e.elem = _from_node(n.items, 0)
    elif n is not None and n.type == "object" and n.additional is not None:
        e.elem = _from_node(n.additional, 0)
    return e


_LINEAR = {  # functions whose cost grows with the size of their receiver or first argument
    "contains",
    "startsWith",
    "endsWith",
    "matches",
    "find",
    "findAll",
    "isSorted",
    "sum",
    "min",
    "max",
    "indexOf",
    "lastIndexOf",
    "split",
    "replace",
    "join",
    "lowerAscii",
    "upperAscii",
    "trim",
    "substring",
    "charAt",
    "format",
    "quote",
    "string",
    "url",
    "isURL",
    "quantity",
    "isQuantity",
    "reverse",
    "sort",
    "distinct",
    "flatten",
    "sets.contains",
    "sets.equivalent",
    "sets.intersects",
}
_MACROS = {"all", "exists", "exists_one", "map", "filter"}


class Estimator:
    def __init__(self, self_node: crdschema.Node) -> None:
        self.vars: dict[str, Est] = {
            "self": _from_node(self_node, 1),
            "oldSelf": _from_node(self_node, 1),
        }

    def est(self, a: Ast) -> Est:
        kind = a[0]
        if kind == "lit":
            size = max(len(a[2]) - 2, 1) if a[1] == "str" else 1
            return Est(0, size)
        if kind == "id":
            v = self.vars.get(a[1])
            return Est(1, v.size, v.node, v.elem) if v else Est(1, MAX_REQUEST)
        if kind == "sel":
            base = self.est(a[1])
            n = base.node.child(a[2]) if base.node is not None else None
            if base.node is None and base.elem is not None:
                return Est(base.cost + 1, base.elem.size, base.elem.node, base.elem.elem)
            return _from_node(n, base.cost + 1) if n else Est(base.cost + 1, base.size)
        if kind == "idx":
            base, idx = self.est(a[1]), self.est(a[2])
            el = base.elem or Est(0, base.size)
            return Est(base.cost + idx.cost + 1, el.size, el.node, el.elem)
        if kind == "list":
            items = [self.est(x) for x in a[1]]
            cost = sum(i.cost for i in items) + 1
            elem = max(items, key=lambda e: e.size) if items else None
            return Est(cost, max(len(items), 1), None, elem)
        if kind == "map":
            cost = 1.0
            for k, v in a[1]:
                cost += self.est(k).cost + self.est(v).cost
            return Est(cost, max(len(a[1]), 1))
        return self.call(a)

    def call(self, a: Ast) -> Est:
        _, name, target, args = a
        if target is not None and name in _MACROS and args and args[0][0] == "id":
            return self.comprehension(name, target, args)
        if name == "has" and not target:
            return Est(1 + (self.est(args[0]).cost if args else 0), 1)
        parts = ([self.est(target)] if target is not None else []) + [self.est(x) for x in args]
        cost = sum(p.cost for p in parts) + 1
        first = parts[0] if parts else Est(0, 1)
        if name == "_?_:_":
            return Est(
                parts[0].cost + max(parts[1].cost, parts[2].cost), max(p.size for p in parts)
            )
        if name in ("_==_", "_!=_") and len(parts) == 2:
            return Est(cost + 0.1 * min(parts[0].size, parts[1].size), 1)
        if name == "_in_" and len(parts) == 2:
            return Est(cost + parts[1].size, 1)
        if name == "_+_" and len(parts) == 2:
            size = parts[0].size + parts[1].size
            el = parts[0].elem or parts[1].elem
            return Est(cost + 0.1 * size, size, None, el)
        if name in _LINEAR:
            cost += first.size * (1 if first.elem is not None or name in ("sum", "min") else 0.1)
            if name in ("split", "findAll"):
                return Est(cost, first.size, None, Est(0, first.size))
            return Est(cost, first.size)
        return Est(cost, first.size if name in ("string", "bytes") else 1)

    def comprehension(self, name: str, target: Ast, args: list[Ast]) -> Est:
        rng = self.est(target)
        var = args[0][1]
        saved = self.vars.get(var)
        self.vars[var] = rng.elem or Est(0, rng.size)
        try:
            body = [self.est(x) for x in args[1:]]
        finally:
            if saved is None:
                self.vars.pop(var, None)
            else:
                self.vars[var] = saved
        per = sum(b.cost for b in body) + 1
        cost = rng.cost + rng.size * per
        if name == "map":
            return Est(cost + rng.size, rng.size, None, body[-1] if body else None)
        if name == "filter":
            return Est(cost + rng.size, rng.size, None, rng.elem)
        return Est(cost, 1)


def estimate(src: str, node: crdschema.Node) -> float:
    """The worst-case cost of one evaluation of rule `src` on a value of schema `node`; 0 when
    the rule does not parse here (the CEL compiler reports that)."""
    try:
        ast = parse(src)
    except (ParseError, RecursionError):
        return 0.0
    try:
        return Estimator(node).est(ast).cost
    except (RecursionError, IndexError, TypeError):
        return 0.0


def cost_message(what: str, cost: float, limit: float) -> str:
    factor = cost / limit
    shown = "more than 100x" if factor > 100 else f"{factor:.1f}x"
    return (
        f"{what} exceeds budget by factor of {shown} (try simplifying the rule, or adding "
        "maxItems, maxProperties, and maxLength where arrays, maps, and strings are declared)"
    )
