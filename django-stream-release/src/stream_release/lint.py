"""stream-release-lint: find, in a project's source, the streaming responses that will pin a
database connection, before they reach production.

    stream-release-lint [--format text|json] [--select SR001,SR002] PATH ...

SR001  a streaming response built in a function that used the ORM first, with no release
       (the connection stays checked out until the last chunk is sent)
SR002  queryset.iterator() in a streaming body: its cursor keeps the connection for the whole
       body, and no release can free it
SR003  a query in a streaming body (a queryset iterated, an ORM call): the connection is kept
       across chunks unless something gives it back after each

A line ending in `# noqa: SR001` (or `# noqa` alone) is not reported. Exit status: 0 nothing
found, 1 findings, 2 a usage error or a file that does not parse. It reads source only (the
ast module): it imports nothing of the project. As a pre-commit hook:

    - repo: local
      hooks:
        - id: stream-release-lint
          name: stream-release-lint
          entry: stream-release-lint
          language: python
          additional_dependencies: [django-stream-release]
          types: [python]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

STREAMING = {"StreamingHttpResponse", "FileResponse", "StreamingCSVResponse"}
RELEASING = {"ReleasingStreamingHttpResponse"}
RELEASES = {"release_connections", "arelease_connections", "close_all"}
# calls that reach the database through the ORM, on a chain that has a manager (`.objects`) or
# anywhere for the writes and reads of an instance
# calls that reach the database, on a chain with a manager (`.objects`, a related `_set`); the
# others (filter, order_by, values...) only build a queryset, which runs when it is evaluated
QUERYSET_METHODS = {
    "get", "create", "update", "delete", "count", "exists", "first", "last", "aggregate", "bulk_create",
    "bulk_update", "get_or_create", "update_or_create", "in_bulk", "explain", "contains",
    "acount", "aexists", "aget", "afirst", "alast", "acreate", "aupdate", "adelete", "aaggregate", "ain_bulk",
    "aget_or_create", "aupdate_or_create", "abulk_create", "abulk_update", "acontains",
}  # fmt: skip
# what evaluates a queryset given to it
EVALUATES = {"list", "tuple", "set", "len", "sorted", "bool", "dict"}
INSTANCE_WRITES = {"save", "asave", "refresh_from_db", "arefresh_from_db"}
SHORTCUTS = {"get_object_or_404", "get_list_or_404", "aget_object_or_404", "aget_list_or_404"}

MESSAGES = {
    "SR001": "{what} after using the ORM, with nothing giving the connection back: it stays checked out until "
    "the last chunk is sent. Return a stream_release.ReleasingStreamingHttpResponse (or set "
    "STREAM_RELEASE_ALL_STREAMS = True)",
    "SR002": "queryset.iterator() in a streaming body keeps its cursor, and the connection, open for the whole "
    "body; no release can free it. Read it with stream_release.batches(queryset, size) instead",
    "SR003": "{what} in a streaming body keeps the connection across chunks. Read with stream_release.batches(), "
    "or give it back after each chunk (arelease_connections(), STREAM_RELEASE_ALL_STREAMS = True)",
}
NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    col: int
    code: str
    message: str

    def text(self) -> str:
        return f"{self.path}:{self.line}:{self.col + 1}: {self.code} {self.message}"


def _name(node: ast.AST) -> str | None:
    """The called name: `f` for f(...), `attr` for x.attr(...)."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _chain(node: ast.AST) -> list[str]:
    """The names along an attribute/call chain, outermost last: Item.objects.filter(...).values
    gives ["Item", "objects", "filter", "values"]."""
    names: list[str] = []
    while True:
        if isinstance(node, ast.Call):
            node = node.func
        elif isinstance(node, ast.Attribute):
            names.append(node.attr)
            node = node.value
        elif isinstance(node, ast.Subscript):
            node = node.value
        else:
            if isinstance(node, ast.Name):
                names.append(node.id)
            return names[::-1]


def _manager(name: str) -> bool:
    """A manager's name in a chain: `objects`, `global_objects`, a related `item_set`."""
    return name == "objects" or name.endswith(("_objects", "_set"))


def _resolved_chain(node: ast.AST, bound: Mapping[str, ast.AST]) -> list[str]:
    """_chain(node), its first name replaced by the chain of what it is bound to (qs = X.objects...)."""
    chain = _chain(node)
    for _ in range(5):  # a name bound to a name bound to a chain...
        value = bound.get(chain[0]) if chain else None
        if isinstance(value, ast.IfExp):  # manager = A.global_objects if x else A.objects
            value = value.body
        if not isinstance(value, (ast.Call, ast.Attribute, ast.Name)):
            break
        resolved = [*_chain(value), *chain[1:]]
        if resolved == chain:
            break
        chain = resolved
    return chain


def _orm_use(node: ast.AST, bound: Mapping[str, ast.AST] | None = None) -> str | None:
    """What ORM use `node` is (a call), or None."""
    if isinstance(node, ast.Call):
        name = _name(node.func)
        chain = _resolved_chain(node.func, bound or {})
        if name in INSTANCE_WRITES:
            return f"{name}()"
        if name in SHORTCUTS:
            return f"{name}()"
        if name in QUERYSET_METHODS and any(_manager(n) for n in chain[:-1]):
            return f"{'.'.join(_chain(node.func)[-3:])}()"
        if name in EVALUATES and node.args and _queryset_expr(node.args[0], bound or {}):
            return f"{name}() of a queryset"
        if name == "cursor" and chain[:1] in (["connection"], ["connections"]):
            return "connection.cursor()"
    return None


def _queryset_expr(node: ast.AST, bound: Mapping[str, ast.AST]) -> bool:
    """An expression that is a queryset: a manager chain (X.objects..., a name bound to one),
    not .iterator() (SR002 says that)."""
    if isinstance(node, ast.Name) and _queryset_name(node.id):
        return True  # a name as Django names querysets (queryset, qs)
    chain = _resolved_chain(node, bound)
    if chain and (chain[-1] == "get_queryset" or (len(chain) == 1 and _queryset_name(chain[0]))):
        return True
    return any(_manager(n) for n in chain) and chain[-1] not in ("iterator", "aiterator")


def _queryset_name(name: str) -> bool:
    return name in ("queryset", "qs") or name.endswith(("_queryset", "_qs"))


def _walk_own(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's own body, not of the functions and classes defined in it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        yield child
        yield from _walk_own(child)


def _in_order(node: ast.AST) -> list[ast.AST]:
    return sorted(_walk_own(node), key=lambda n: (getattr(n, "lineno", 0), getattr(n, "col_offset", 0)))


def _is_generator(func: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    return any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _walk_own(func))


def _called(node: ast.AST) -> str | None:
    return _name(node.func) if isinstance(node, ast.Call) else None


Function = ast.FunctionDef | ast.AsyncFunctionDef


class Scope:
    """Where a call is made: the names the file imports, and the class of the method making it.
    A call resolves to a key of Index: `f(...)` to "f", `module.f(...)` (an imported name) to
    "f", `self.m(...)` to "Class.m"; any other call (`request.GET.get`) to None."""

    def __init__(self, imported: set[str], cls: str | None = None) -> None:
        self.imported, self.cls = imported, cls

    def key(self, node: ast.AST) -> str | None:
        if not isinstance(node, ast.Call):
            return None
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            if func.value.id in ("self", "cls"):
                return f"{self.cls}.{func.attr}" if self.cls else None
            if func.value.id in self.imported:
                return func.attr
        return None


def _imported(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def functions_of(tree: ast.Module) -> Iterator[tuple[str, Function, Scope]]:
    """(key, function, its scope) of every function of a module: "name" for a function (at the
    top or nested), "Class.name" for a method."""
    imported = _imported(tree)

    def visit(node: ast.AST, cls: str | None) -> Iterator[tuple[str, Function, Scope]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                yield from visit(child, child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield (f"{cls}.{child.name}" if cls else child.name), child, Scope(imported, cls)
                yield from visit(child, None)
            else:
                yield from visit(child, cls)

    yield from visit(tree, None)


class Index:
    """What the linted files define, so that a view in one file and the helper that builds its
    response or reads its rows in another are seen together: generator functions, stream
    factories (they return a streaming response, or another factory's), ORM users and
    releasers (they use the ORM or give the connection back, themselves or through a function
    they call). Keyed as Scope.key resolves calls: methods only through self, functions by name."""

    def __init__(self, trees: Sequence[ast.Module], release_names: Sequence[str] = ()) -> None:
        self.release_names = RELEASES | set(release_names)
        self.generators: dict[str, Function] = {}
        calls: dict[str, set[str]] = {}
        returns: dict[str, set[str]] = {}
        self.factories: set[str] = set()
        self.orm_users: set[str] = set()
        self.releasers: set[str] = set()
        # each class's bases by name (a mixin's method is found through self), and every key
        self.bases: dict[str, list[str]] = {
            c.name: [b for base in c.bases if (b := _name(base))]
            for tree in trees
            for c in ast.walk(tree)
            if isinstance(c, ast.ClassDef)
        }
        functions = [f for tree in trees for f in functions_of(tree)]  # each tree walked once
        self.known = {key for key, _, _ in functions}
        for key, func, scope in functions:
            own = list(_walk_own(func))
            if _is_generator(func):
                self.generators[key] = func
            calls.setdefault(key, set()).update(k for n in own if (k := self.resolve(scope, n)))
            assigned = {
                n.targets[0].id: n.value
                for n in own
                if isinstance(n, ast.Assign) and len(n.targets) == 1 and isinstance(n.targets[0], ast.Name)
            }
            returned = [
                assigned.get(v.id, v) if isinstance(v, ast.Name) else v
                for n in own
                if isinstance(n, ast.Return) and (v := n.value) is not None
            ]
            if any(_called(r) in STREAMING | RELEASING for r in returned):
                self.factories.add(key)
            returns.setdefault(key, set()).update(k for r in returned if (k := self.resolve(scope, r)))
            if any(_orm_use(n, assigned) for n in own):
                self.orm_users.add(key)
            if any(self.releases(n) for n in own):
                self.releasers.add(key)
        changed = True
        while changed:
            before = (len(self.factories), len(self.orm_users), len(self.releasers))
            self.factories |= {f for f, r in returns.items() if r & self.factories}
            # calling a generator function runs none of its body: it uses the ORM only when read
            self.orm_users |= {
                f for f, c in calls.items() if c & (self.orm_users - self.generators.keys()) and f not in self.factories
            }
            self.releasers |= {f for f, c in calls.items() if c & self.releasers}
            changed = before != (len(self.factories), len(self.orm_users), len(self.releasers))

    def resolve(self, scope: Scope, node: ast.AST) -> str | None:
        """The key a call resolves to (Scope.key); `self.m()` on a class that does not define
        m looks in its bases, breadth first."""
        key = scope.key(node)
        func = node.func if isinstance(node, ast.Call) else None
        if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
            qualified = f"{func.value.id}.{func.attr}"  # Model.classmethod(...)
            if qualified in self.known:
                return qualified
        if key is None or key in self.known or scope.cls is None or not key.startswith(f"{scope.cls}."):
            return key
        method = key[len(scope.cls) + 1 :]
        queue, seen = list(self.bases.get(scope.cls, [])), {scope.cls}
        while queue:
            base = queue.pop(0)
            if base in seen:
                continue
            seen.add(base)
            if f"{base}.{method}" in self.known:
                return f"{base}.{method}"
            queue += self.bases.get(base, [])
        return key

    def releases(self, node: ast.AST, scope: Scope | None = None) -> bool:
        if not isinstance(node, ast.Call):
            return False
        name = _name(node.func)
        if name in self.release_names or (scope is not None and self.resolve(scope, node) in self.releasers):
            return True
        return name == "close" and _chain(node.func)[:1] == ["connection"]


class _Module:
    def __init__(self, path: str, tree: ast.Module, lines: list[str], index: Index) -> None:
        self.path, self.tree, self.lines, self.index = path, tree, lines, index
        self.findings: list[Finding] = []

    def add(self, node: ast.AST, code: str, **fields: str) -> None:
        line, col = getattr(node, "lineno", 1), getattr(node, "col_offset", 0)
        if _suppressed(self.lines[line - 1] if line <= len(self.lines) else "", code):
            return
        finding = Finding(self.path, line, col, code, MESSAGES[code].format(**fields))
        if finding not in self.findings:
            self.findings.append(finding)

    def check(self) -> list[Finding]:
        self.scope = Scope(_imported(self.tree))
        self._functions(self.tree, {}, None)
        self.findings.sort(key=lambda f: (f.line, f.col, f.code))
        return self.findings

    def _functions(self, node: ast.AST, outer: dict[str, ast.AST], cls: str | None) -> None:
        """Each function, with the names its enclosing functions bound (closures)."""
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.ClassDef):
                self._functions(child, outer, child.name)
            elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                self.scope = Scope(self.scope.imported, cls)
                bound = self._function(child, dict(outer))
                self._functions(child, bound, None)
            else:
                self._functions(child, outer, cls)

    def _function(self, func: Function, bound: dict[str, ast.AST]) -> dict[str, ast.AST]:
        """SR001 for the streaming responses this function builds (itself, or through a
        factory); SR002/SR003 for their bodies. Returns the names it bound."""
        used_orm = released = False
        index, scope = self.index, self.scope
        me = f"{scope.cls}.{func.name}" if scope.cls else func.name
        for node in _in_order(func):
            if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
                bound[node.targets[0].id] = node.value
            name, key = _called(node), index.resolve(scope, node)
            if index.releases(node, scope):
                released = True
            if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) and _queryset_expr(node.iter, bound):
                used_orm = True  # the view evaluates a queryset
            if not isinstance(node, ast.Call) or name is None:
                continue
            if name in STREAMING and name not in RELEASING:
                if used_orm and not released and not self._body_releases(node, bound):
                    self.add(node, "SR001", what=f"{name} built")
                self._bodies(node, bound)
            elif name in RELEASING or (name == "from_queryset" and "StreamingCSVResponse" in _chain(node.func)):
                self._bodies(node, bound)
            elif key in index.factories and key != me:
                if used_orm and not released:
                    self.add(node, "SR001", what=f"the streaming response {name}() builds")
                self._factory_args(node, bound)
            elif _orm_use(node, bound) or (key in index.orm_users and key not in index.generators):
                used_orm = True
        return bound

    def _factory_args(self, call: ast.Call, bound: dict[str, ast.AST]) -> None:
        """What a factory is given to stream: qs.iterator() or qs.iterator uncalled (SR002), a
        generator function uncalled or called, a generator expression (read as its body)."""
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            value = bound.get(arg.id, arg) if isinstance(arg, ast.Name) else arg
            if isinstance(value, ast.Attribute) and value.attr in ("iterator", "aiterator"):
                self.add(arg, "SR002")
            elif _called(value) in ("iterator", "aiterator"):
                self.add(arg, "SR002")
            elif isinstance(arg, ast.Name) and arg.id in self.index.generators:
                self._body(self.index.generators[arg.id], bound, set())
            else:
                body, names = self._body_of(arg, bound)
                if body is not None:
                    self._body(body, names, set())

    def _body_of(self, arg: ast.AST, bound: dict[str, ast.AST]) -> tuple[ast.AST | None, dict[str, ast.AST]]:
        """What a streaming body argument is: a generator expression, a generator function (with
        its parameters bound to the call's arguments), or None; and the names it can see."""
        body = bound.get(arg.id, arg) if isinstance(arg, ast.Name) else arg
        if isinstance(body, (ast.GeneratorExp, ast.ListComp)):
            return body, bound
        name, key = _called(body), self.index.resolve(self.scope, body)
        if isinstance(body, ast.Call) and key is not None and key in self.index.generators:
            generator = self.index.generators[key]
            params = [a.arg for a in generator.args.args if a.arg not in ("self", "cls")]
            return generator, {**bound, **dict(zip(params, body.args, strict=False))}
        if isinstance(body, ast.Call) and name in ("map", "filter") and len(body.args) > 1:
            return self._body_of(body.args[1], bound)
        return None, bound

    def _body_releases(self, call: ast.Call, bound: dict[str, ast.AST]) -> bool:
        """The body gives the connection back itself (a release, or a function that does one)."""
        for arg in call.args[:1]:
            body, _ = self._body_of(arg, bound)
            if body is not None and any(self.index.releases(n, self.scope) for n in _walk_own(body)):
                return True
        return False

    def _bodies(self, call: ast.Call, bound: dict[str, ast.AST]) -> None:
        """The streaming body a response call is given."""
        for arg in [*call.args[:1], *(k.value for k in call.keywords if k.arg == "streaming_content")]:
            value = bound.get(arg.id, arg) if isinstance(arg, ast.Name) else arg
            if _called(value) in ("iterator", "aiterator"):
                self.add(arg, "SR002")  # the body is the cursor itself
                continue
            body, names = self._body_of(arg, bound)
            if body is not None:
                self._body(body, names, set())
        if isinstance(call.func, ast.Attribute) and call.func.attr == "from_queryset":
            self.add(call, "SR002")  # django-fast-export: iterates queryset.iterator() in its body

    def _body(self, body: ast.AST, bound: dict[str, ast.AST], visited: set[int]) -> None:
        if id(body) in visited:
            return
        visited.add(id(body))
        nodes = [body, *_walk_own(body)]
        seen: set[int] = set()  # said once (a queryset iterated, a call and its chain), or batches()' own
        for node in nodes:
            name = _called(node)
            if name in ("batches", "abatches"):
                seen.update(id(n) for n in ast.walk(node))  # one query per batch, given back after each
            elif name in ("iterator", "aiterator"):
                self.add(node, "SR002")
                seen.update(id(n) for n in ast.walk(node))
            elif isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)) and _queryset_expr(node.iter, bound):
                self.add(node.iter, "SR003", what="a queryset iterated")
                seen.update(id(n) for n in ast.walk(node.iter))
            elif (
                isinstance(node, ast.Call)
                and self.index.resolve(self.scope, node) in self.index.generators
                and node is not body
            ):
                inner, names = self._body_of(node, bound)  # a generator the body reads from
                if inner is not None:
                    self._body(inner, names, visited)
        for node in nodes:
            if id(node) in seen:
                continue
            use = _orm_use(node, bound)
            key = self.index.resolve(self.scope, node)
            if use is None and key in self.index.orm_users and key not in self.index.generators:
                use = f"{_called(node)}(), which queries,"
            if use:
                self.add(node, "SR003", what=use)
                seen.update(id(n) for n in ast.walk(node))


def _suppressed(line: str, code: str) -> bool:
    match = NOQA.search(line)
    if match is None:
        return False
    codes = match.group("codes")
    return codes is None or code.upper() in re.split(r"[,\s]+", codes.upper())


def check_source(
    source: str, path: str = "<string>", select: Sequence[str] = (), release_names: Sequence[str] = ()
) -> list[Finding]:
    """The findings of one module's source on its own (SyntaxError if it does not parse)."""
    tree = ast.parse(source, filename=path)
    found = _Module(path, tree, source.splitlines(), Index([tree], release_names)).check()
    return [f for f in found if not select or f.code in select]


def check_files(
    paths: Sequence[Path], select: Sequence[str] = (), release_names: Sequence[str] = ()
) -> tuple[list[Finding], list[str]]:
    """The findings of several files read together (a helper in one file, the view in
    another), and the errors of those that could not be read."""
    parsed: list[tuple[Path, str, ast.Module]] = []
    errors: list[str] = []
    for path in paths:
        try:
            source = path.read_text(encoding="utf-8")
            parsed.append((path, source, ast.parse(source, filename=str(path))))
        except (SyntaxError, UnicodeDecodeError) as exc:
            errors.append(
                f"{path}: cannot be read as Python {sys.version_info[0]}.{sys.version_info[1]}: {exc} "
                "(run stream-release-lint with the project's Python: ast reads the grammar of the one it runs on)"
            )
    index = Index([tree for _, _, tree in parsed], release_names)
    findings: list[Finding] = []
    for path, source, tree in parsed:
        found = _Module(str(path), tree, source.splitlines(), index).check()
        findings += [f for f in found if not select or f.code in select]
    return findings, errors


def _files(paths: Sequence[str]) -> Iterator[Path]:
    for given in paths:
        path = Path(given)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*.py") if not any(part.startswith(".") for part in p.parts))
        else:
            yield path


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="stream-release-lint",
        description="Find the Django streaming responses that will pin a database connection.",
        epilog="; ".join(f"{code}: {text.split('.')[0]}" for code, text in MESSAGES.items()),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="files or directories to read")
    parser.add_argument("--format", choices=["text", "json"], default="text", help="text (default) or json")
    parser.add_argument(
        "--select", default="", metavar="CODES", help="only these codes, comma-separated (default: all)"
    )
    parser.add_argument(
        "--release-name",
        action="append",
        default=[],
        metavar="NAME",
        help="a function of your own that gives the connection back (repeatable); functions that call one count too",
    )
    args = parser.parse_args(argv)
    select = [c.strip().upper() for c in args.select.split(",") if c.strip()]
    unknown = [c for c in select if c not in MESSAGES]
    if unknown:
        parser.error(f"--select: unknown code {', '.join(unknown)}; the codes are {', '.join(MESSAGES)}")
    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        parser.error(f"PATH: {', '.join(missing)} does not exist")
    findings, errors = check_files(list(_files(args.paths)), select, args.release_name)
    for error in errors:
        print(error, file=sys.stderr)
    if args.format == "json":
        print(json.dumps([asdict(f) for f in findings], indent=2))
    else:
        for finding in findings:
            print(finding.text())
    if errors:
        return 2
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())
