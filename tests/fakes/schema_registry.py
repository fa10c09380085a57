"""A local schema registry speaking the documented REST protocol, for Avro tests.

No schema-registry server installs here, so this stands in for one as the exchange fakes stand
in for exchanges: the client side is confluent-kafka's own `SchemaRegistryClient` and Avro
serializers. It keeps subjects in memory and answers the calls those clients (and curl users)
make, with the registry's status and error codes:

- POST /subjects/{s}/versions (register: the same schema again keeps its id and version; a new
  one is checked against the subject's compatibility level: 409 when incompatible, 42201 when
  not a valid Avro schema), POST /subjects/{s} (lookup: 40401 subject, 40403 schema not found);
- GET /schemas/ids/{id} (40403), GET /subjects, GET /subjects/{s}/versions,
  GET /subjects/{s}/versions/{n|latest} (40401, 40402);
- POST /compatibility/subjects/{s}/versions/{n|latest} and .../versions (all);
- GET/PUT /config and /config/{s} (BACKWARD by default; 42203 for an unknown level).

Compatibility follows Avro's schema-resolution rules (a reader reads a writer's data when its
record fields are in the writer's or have defaults, types are equal or promotable, enums and
unions cover the writer's), which is what the registry's BACKWARD/FORWARD/FULL levels apply.
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

LEVELS = ("NONE", "BACKWARD", "BACKWARD_TRANSITIVE", "FORWARD", "FORWARD_TRANSITIVE", "FULL",
          "FULL_TRANSITIVE")  # fmt: skip
PRIMITIVES = {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
# (writer's type, reader's type) pairs a reader may promote
PROMOTIONS = {("int", "long"), ("int", "float"), ("int", "double"), ("long", "float"),
              ("long", "double"), ("float", "double"), ("string", "bytes"),
              ("bytes", "string")}  # fmt: skip
CONTENT_TYPE = "application/vnd.schemaregistry.v1+json"


class RegistryError(Exception):
    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


class InvalidSchema(ValueError):
    pass


def _full_name(schema: dict, namespace: str) -> str:
    name = schema["name"]
    if "." in name:
        return name
    ns = schema.get("namespace", namespace)
    return f"{ns}.{name}" if ns else name


def _index(schema: Any, names: dict[str, Any], namespace: str = "") -> None:
    """Check the schema's shape and collect its named types (full name -> definition)."""
    if isinstance(schema, str):
        known = schema in PRIMITIVES or schema in names or f"{namespace}.{schema}" in names
        if not known:
            raise InvalidSchema(f"unknown type {schema!r}")
        return
    if isinstance(schema, list):
        for branch in schema:
            _index(branch, names, namespace)
        return
    if not isinstance(schema, dict) or "type" not in schema:
        raise InvalidSchema(f"not a schema: {schema!r}")
    kind = schema["type"]
    if kind in ("record", "error", "enum", "fixed"):
        if not isinstance(schema.get("name"), str) or not schema["name"]:
            raise InvalidSchema(f"a {kind} needs a name")
        full = _full_name(schema, namespace)
        names[full] = schema
        inner = full.rpartition(".")[0]
        if kind == "enum" and not isinstance(schema.get("symbols"), list):
            raise InvalidSchema(f"enum {full} needs symbols")
        if kind == "fixed" and not isinstance(schema.get("size"), int):
            raise InvalidSchema(f"fixed {full} needs a size")
        if kind in ("record", "error"):
            fields = schema.get("fields")
            if not isinstance(fields, list):
                raise InvalidSchema(f"record {full} needs fields")
            for f in fields:
                if not isinstance(f, dict) or "name" not in f or "type" not in f:
                    raise InvalidSchema(f"record {full}: a field needs a name and a type")
                _index(f["type"], names, inner)
    elif kind == "array":
        _index(schema.get("items"), names, namespace)
    elif kind == "map":
        _index(schema.get("values"), names, namespace)
    elif kind in PRIMITIVES:
        pass
    else:
        _index(kind, names, namespace)


def parse(text: str) -> tuple[Any, dict[str, Any]]:
    """A schema's JSON and its named types; InvalidSchema when it is not valid Avro."""
    try:
        schema = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidSchema(f"not JSON: {exc}") from None
    names: dict[str, Any] = {}
    _index(schema, names)
    return schema, names


def _deref(schema: Any, names: dict[str, Any]) -> Any:
    if isinstance(schema, str) and schema not in PRIMITIVES:
        found = names.get(schema) or next(
            (v for k, v in names.items() if k.rpartition(".")[2] == schema), None
        )
        return found if found is not None else schema
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVES and len(schema) == 1:
        return schema["type"]
    if isinstance(schema, dict) and schema.get("type") in PRIMITIVES:
        return schema["type"]  # a primitive with a logical type: resolved as the primitive
    return schema


def _kind(schema: Any) -> str:
    if isinstance(schema, list):
        return "union"
    return schema if isinstance(schema, str) else schema["type"]


def incompatibility(reader: Any, rnames: dict, writer: Any, wnames: dict, path: str = "") -> str:
    """Why data written with `writer` cannot be read with `reader`; "" when it can."""
    r, w = _deref(reader, rnames), _deref(writer, wnames)
    rk, wk = _kind(r), _kind(w)
    where = path or "/"
    if wk == "union":
        for branch in w:
            why = incompatibility(r, rnames, branch, wnames, path)
            if why:
                return why
        return ""
    if rk == "union":
        if any(not incompatibility(b, rnames, w, wnames, path) for b in r):
            return ""
        return f"{where}: the reader's union has no branch for the writer's {wk}"
    if rk in PRIMITIVES or wk in PRIMITIVES:
        if rk == wk or (wk, rk) in PROMOTIONS:
            return ""
        return f"{where}: reader type {rk} cannot read writer type {wk}"
    if rk != wk:
        return f"{where}: reader type {rk} cannot read writer type {wk}"
    if rk in ("record", "error"):
        if r["name"].rpartition(".")[2] != w["name"].rpartition(".")[2] and w["name"] not in r.get(
            "aliases", []
        ):
            return f"{where}: record names differ ({r['name']} vs {w['name']})"
        written = {f["name"]: f for f in w["fields"]}
        for f in r["fields"]:
            source = written.get(f["name"]) or next(
                (written[a] for a in f.get("aliases", []) if a in written), None
            )
            if source is None:
                if "default" not in f:
                    return f"{path}/{f['name']}: a reader field missing in the writer, no default"
                continue
            why = incompatibility(f["type"], rnames, source["type"], wnames, f"{path}/{f['name']}")
            if why:
                return why
        return ""
    if rk == "array":
        return incompatibility(r["items"], rnames, w["items"], wnames, f"{path}/items")
    if rk == "map":
        return incompatibility(r["values"], rnames, w["values"], wnames, f"{path}/values")
    if rk == "enum":
        missing = [s for s in w["symbols"] if s not in r["symbols"]]
        if missing and "default" not in r:
            return f"{where}: the reader's enum lacks {', '.join(missing)}"
        return ""
    if rk == "fixed":
        if r["size"] != w["size"]:
            return f"{where}: fixed sizes differ ({r['size']} vs {w['size']})"
        return ""
    return ""


@dataclass
class Version:
    id: int
    version: int
    text: str
    parsed: tuple[Any, dict[str, Any]]


@dataclass
class Registry:
    """The registry's state and rules, apart from HTTP."""

    compatibility: str = "BACKWARD"
    subjects: dict[str, list[Version]] = field(default_factory=dict)
    subject_levels: dict[str, str] = field(default_factory=dict)
    schemas: dict[int, str] = field(default_factory=dict)  # id -> canonical text
    lock: threading.Lock = field(default_factory=threading.Lock)

    def level(self, subject: str) -> str:
        return self.subject_levels.get(subject, self.compatibility)

    def problems(self, subject: str, text: str, against: list[Version] | None = None) -> list[str]:
        """What makes `text` incompatible with the subject's versions at its level."""
        level = self.level(subject)
        versions = self.subjects.get(subject, []) if against is None else against
        if level == "NONE" or not versions:
            return []
        if not level.endswith("_TRANSITIVE"):
            versions = versions[-1:]
        new, new_names = parse(text)
        out = []
        for old in versions:
            old_schema, old_names = old.parsed
            if level.startswith(("BACKWARD", "FULL")):
                why = incompatibility(new, new_names, old_schema, old_names)
                if why:
                    out.append(f"version {old.version}: the new schema cannot read its data: {why}")
            if level.startswith(("FORWARD", "FULL")):
                why = incompatibility(old_schema, old_names, new, new_names)
                if why:
                    out.append(f"version {old.version}: it cannot read the new data: {why}")
        return out

    def register(self, subject: str, text: str) -> dict[str, Any]:
        try:
            parsed = parse(text)
        except InvalidSchema as exc:
            raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None
        canonical = json.dumps(parsed[0], sort_keys=True, separators=(",", ":"))
        with self.lock:
            versions = self.subjects.setdefault(subject, [])
            for v in versions:
                if json.dumps(v.parsed[0], sort_keys=True, separators=(",", ":")) == canonical:
                    return {"id": v.id, "version": v.version}
            problems = self.problems(subject, text)
            if problems:
                raise RegistryError(
                    409, 409,
                    f"Schema being registered is incompatible with an earlier schema for subject "
                    f'"{subject}", details: [{"; ".join(problems)}]',
                )  # fmt: skip
            ids = [i for i, t in self.schemas.items() if t == canonical]
            schema_id = ids[0] if ids else len(self.schemas) + 1
            self.schemas[schema_id] = canonical
            version = Version(schema_id, len(versions) + 1, text, parsed)
            versions.append(version)
            return {"id": schema_id, "version": version.version}

    def version(self, subject: str, which: str) -> Version:
        versions = self.subjects.get(subject)
        if not versions:
            raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
        if which in ("latest", "-1"):
            return versions[-1]
        if not which.isdigit():
            raise RegistryError(422, 42202, f"The specified version '{which}' is not valid")
        for v in versions:
            if v.version == int(which):
                return v
        raise RegistryError(404, 40402, f"Version {which} not found.")


def _described(subject: str, v: Version) -> dict[str, Any]:
    return {"subject": subject, "id": v.id, "version": v.version, "schema": v.text}


class _Handler(BaseHTTPRequestHandler):
    registry: Registry  # set on the subclass made per server

    def log_message(self, *_args: Any) -> None:  # quiet
        pass

    def _send(self, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", CONTENT_TYPE)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict[str, Any]:
        size = int(self.headers.get("Content-Length") or 0)
        try:
            body = json.loads(self.rfile.read(size) or b"{}")
        except json.JSONDecodeError:
            raise RegistryError(400, 400, "Unexpected character in the request body") from None
        return body if isinstance(body, dict) else {}

    def _schema_text(self, body: dict[str, Any]) -> str:
        if body.get("schemaType", "AVRO") != "AVRO":
            raise RegistryError(422, 42201, f"Invalid schema type {body['schemaType']}")
        if not isinstance(body.get("schema"), str):
            raise RegistryError(422, 42201, "Invalid schema: no schema given")
        return body["schema"]

    def _route(self, method: str) -> None:
        reg = self.registry
        parts = [unquote(p) for p in urlsplit(self.path).path.strip("/").split("/") if p]
        match method, parts:
            case "GET", ["subjects"]:
                return self._send(200, sorted(s for s, v in reg.subjects.items() if v))
            case "GET", ["schemas", "ids", sid] if sid.isdigit():
                if int(sid) not in reg.schemas:
                    raise RegistryError(404, 40403, "Schema not found")
                return self._send(200, {"schema": reg.schemas[int(sid)]})
            case "POST", ["subjects", subject, "versions"]:
                return self._send(200, reg.register(subject, self._schema_text(self._body())))
            case "POST", ["subjects", subject]:
                text = self._schema_text(self._body())
                if not reg.subjects.get(subject):
                    raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                canonical = json.dumps(parse(text)[0], sort_keys=True, separators=(",", ":"))
                for v in reg.subjects[subject]:
                    if json.dumps(v.parsed[0], sort_keys=True, separators=(",", ":")) == canonical:
                        return self._send(200, _described(subject, v))
                raise RegistryError(404, 40403, "Schema not found")
            case "GET", ["subjects", subject, "versions"]:
                if not reg.subjects.get(subject):
                    raise RegistryError(404, 40401, f"Subject '{subject}' not found.")
                return self._send(200, [v.version for v in reg.subjects[subject]])
            case "GET", ["subjects", subject, "versions", which]:
                return self._send(200, _described(subject, reg.version(subject, which)))
            case "POST", ["compatibility", "subjects", subject, "versions", *which]:
                text = self._schema_text(self._body())
                try:
                    parse(text)
                except InvalidSchema as exc:
                    raise RegistryError(422, 42201, f"Invalid schema: {exc}") from None
                against = None if not which else [reg.version(subject, which[0])]
                if which and reg.level(subject).endswith("_TRANSITIVE"):
                    against = None
                problems = reg.problems(subject, text, against)
                return self._send(200, {"is_compatible": not problems, "messages": problems})
            case "GET", ["config"]:
                return self._send(200, {"compatibilityLevel": reg.compatibility})
            case "GET", ["config", subject]:
                if subject not in reg.subject_levels:
                    why = f"Subject '{subject}' does not have subject-level compatibility set"
                    raise RegistryError(404, 40408, why)
                return self._send(200, {"compatibilityLevel": reg.subject_levels[subject]})
            case "PUT", ["config", *subject]:
                level = str(self._body().get("compatibility", "")).upper()
                if level not in LEVELS:
                    raise RegistryError(422, 42203, f"Invalid compatibility level {level!r}")
                if subject:
                    reg.subject_levels[subject[0]] = level
                else:
                    reg.compatibility = level
                return self._send(200, {"compatibility": level})
        raise RegistryError(404, 404, f"HTTP 404 Not Found: {method} {self.path}")

    def _handle(self, method: str) -> None:
        try:
            self._route(method)
        except RegistryError as exc:
            self._send(exc.status, {"error_code": exc.code, "message": exc.message})

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")


class FakeSchemaRegistry:
    """The registry on 127.0.0.1 (a free port) in a thread: `with FakeSchemaRegistry() as r:`,
    then `r.url` for clients and `r.registry` for its state."""

    def __init__(self) -> None:
        self.registry = Registry()
        handler = type("Handler", (_Handler,), {"registry": self.registry})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> FakeSchemaRegistry:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FakeSchemaRegistry:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main() -> None:
    """`python tests/fakes/schema_registry.py [PORT]`: serve until Ctrl-C (for trying by hand)."""
    import sys

    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8081
    registry = Registry()
    handler = type("Handler", (_Handler,), {"registry": registry})
    server = ThreadingHTTPServer(("127.0.0.1", port), handler)
    print(f"schema registry on http://127.0.0.1:{port}")
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    main()
