#!/usr/bin/env python3
"""Generate apiserver/src/protobuf/schema.rs, the field table Skiff's protobuf decoder runs on.

Kubernetes clients (client-go typed clients: kubectl create/run/expose, helm) send request bodies
as `application/vnd.kubernetes.protobuf`: the gogo-protobuf (proto2) encoding of the Go types.
To turn such a body into the JSON the rest of the server handles, the decoder needs, for every
message a served kind reaches, each field's number, wire kind, shape (single, repeated, map),
nested message, JSON name, and whether a zero value survives into JSON. Nothing here is typed by
hand; two well-kept sources are combined and cross-checked against each other:

* the `k8s-pb` crate (prost bindings generated from upstream's generated.proto files): field
  numbers, protobuf kinds, repeated/map shape and nested message types. Its source is located
  with `cargo metadata` (it is a dev-dependency of skiff-apiserver), or given with --k8s-pb.
* the upstream Go types (kubernetes/api and kubernetes/apimachinery, at the tag that matches
  k8s-pb's Kubernetes version): each field's struct tags give the exact JSON name (prost's snake
  case loses it: `clusterIP`), `json:",inline"` embedding (Volume inlines VolumeSource), and the
  Go type tells what survives JSON encoding: gogo writes every non-pointer scalar even when zero
  (`paused: false`), while Go's JSON drops those under `omitempty`; pointers (`replicas: 0`) and
  fields without `omitempty` keep their zero value.

Every k8s-pb field must have a Go field with the same number, wire type and (normalised) name,
or generation fails. The Rust test `protobuf::tests::openapi::schema` then checks the committed table
against the k8s-openapi schemas the server validates with (names, types, completeness).

Usage (from the repository root; the Go sources are plain checkouts of the two repositories at
the tag named in KUBE_TAG, e.g. `git clone --depth 1 --branch v0.35.7 <kubernetes/api repo>`):

    python3 scripts/gen_protobuf_schema.py --api-src DIR --apimachinery-src DIR
    python3 scripts/gen_protobuf_schema.py --api-src DIR --apimachinery-src DIR --check

To serve protobuf for another kind, add it to ROOTS and rerun.
"""

from __future__ import annotations

import argparse
import dataclasses
import glob
import json
import os
import re
import subprocess
import sys

# The Kubernetes release k8s-pb 0.9 was generated from (its protos carry 1.35's fields); the Go
# sources must be at this release's staging tag so both sources describe the same API.
KUBE_TAG = "v0.35.7"
K8S_PB_VERSION = "0.9.0"

OUT = "apiserver/src/protobuf/schema.rs"

# The kinds whose protobuf bodies the server accepts: (apiVersion, kind, k8s-pb module, message).
# apiVersion "*" accepts any: upstream registers DeleteOptions in every group-version.
ROOTS = [
    ("v1", "Namespace", "api::core::v1", "Namespace"),
    ("v1", "Pod", "api::core::v1", "Pod"),
    ("v1", "Node", "api::core::v1", "Node"),
    ("v1", "Service", "api::core::v1", "Service"),
    ("v1", "Endpoints", "api::core::v1", "Endpoints"),
    ("v1", "ConfigMap", "api::core::v1", "ConfigMap"),
    ("v1", "Secret", "api::core::v1", "Secret"),
    ("v1", "ServiceAccount", "api::core::v1", "ServiceAccount"),
    ("v1", "Event", "api::core::v1", "Event"),
    ("v1", "Binding", "api::core::v1", "Binding"),
    ("apps/v1", "Deployment", "api::apps::v1", "Deployment"),
    ("apps/v1", "ReplicaSet", "api::apps::v1", "ReplicaSet"),
    ("apps/v1", "DaemonSet", "api::apps::v1", "DaemonSet"),
    ("batch/v1", "Job", "api::batch::v1", "Job"),
    ("coordination.k8s.io/v1", "Lease", "api::coordination::v1", "Lease"),
    ("discovery.k8s.io/v1", "EndpointSlice", "api::discovery::v1", "EndpointSlice"),
    ("autoscaling/v1", "Scale", "api::autoscaling::v1", "Scale"),
    ("policy/v1", "Eviction", "api::policy::v1", "Eviction"),
    ("*", "DeleteOptions", "apimachinery::pkg::apis::meta::v1", "DeleteOptions"),
]

# Messages the decoder reads by hand that no kind reaches: the envelope every body comes in. They
# are in the table so tests can check the decoder's field numbers against the sources.
EXTRA = [("apimachinery::pkg::runtime", "Unknown")]

# Messages with their own JSON form (custom MarshalJSON upstream); the decoder converts them.
SPECIAL = {
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Quantity",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "IntOrString",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Time": "Time",
    "k8s.io.apimachinery.pkg.apis.meta.v1.MicroTime": "MicroTime",
    "k8s.io.apimachinery.pkg.apis.meta.v1.Duration": "Duration",
    "k8s.io.apimachinery.pkg.apis.meta.v1.FieldsV1": "FieldsV1",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "RawExtension",
}

SCALARS = {
    "string": "String",
    "bytes": "Bytes",
    "bool": "Bool",
    "int32": "Int32",
    "int64": "Int64",
    "double": "Double",
}
# protobuf kind -> the wire name in Go's `protobuf:"..."` struct tag.
GO_WIRE = {
    "String": "bytes",
    "Bytes": "bytes",
    "Message": "bytes",
    "Bool": "varint",
    "Int32": "varint",
    "Int64": "varint",
    "Double": "fixed64",
}


class GenError(Exception):
    pass


VERBOSE = False


def note(msg: str) -> None:
    if VERBOSE:
        print(f"note: {msg}", file=sys.stderr)


@dataclasses.dataclass
class PbField:
    number: int
    rust_name: str
    kind: str  # a SCALARS value or "Message"
    shape: str  # "Single" | "Repeated" | "Map"
    message: str | None  # proto full name of the (value) message


@dataclasses.dataclass
class GoField:
    go_name: str
    go_type: str
    number: int
    wire: str
    label: str
    proto_name: str | None
    json_name: str
    omitempty: bool
    omitzero: bool
    inline: bool
    skip: bool  # json:"-"


def proto_package(module: str) -> str:
    """`api::apps::v1` -> `k8s.io.api.apps.v1`: k8s-pb mirrors the proto package tree."""
    return "k8s.io." + module.replace("::", ".")


def go_dir(module: str, api_src: str, apimachinery_src: str) -> str:
    parts = module.split("::")
    if parts[0] == "api":
        return os.path.join(api_src, *parts[1:])
    if parts[0] == "apimachinery":
        return os.path.join(apimachinery_src, *parts[1:])
    raise GenError(f"no Go source tree for k8s-pb module {module}")


def locate_k8s_pb() -> str:
    out = subprocess.run(
        ["cargo", "metadata", "--format-version", "1"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    for pkg in json.loads(out)["packages"]:
        if pkg["name"] == "k8s-pb":
            if pkg["version"] != K8S_PB_VERSION:
                raise GenError(
                    f"k8s-pb is {pkg['version']} but this script expects {K8S_PB_VERSION}: "
                    "update K8S_PB_VERSION and KUBE_TAG together"
                )
            return os.path.join(os.path.dirname(pkg["manifest_path"]), "src")
    raise GenError("k8s-pb is not in `cargo metadata`; is it still a dev-dependency of skiff-apiserver?")


# ---------------------------------------------------------------------------------------------
# k8s-pb (prost output)

PROST_ATTR = re.compile(r"#\[prost\((.*)\)\]")
STRUCT = re.compile(r"^pub struct (\w+) \{")
FIELD = re.compile(r"^pub (?:r#)?(\w+):\s*(.*)$", re.S)
# Paths prost uses for containers; what remains in a field type is the message path.
CONTAINER = re.compile(r"(?<!\w)::(?:core|prost)::[\w:]+")
TYPE_PATH = re.compile(r"\b((?:super::)*(?:[a-z_0-9]+::)*[A-Z]\w*)")


def resolve(module: str, path: str) -> tuple[str, str]:
    """A type path as written inside `module` -> (module, struct)."""
    mod = module.split("::")
    segs = path.split("::")
    while segs and segs[0] == "super":
        mod.pop()
        segs.pop(0)
    return "::".join(mod + segs[:-1]), segs[-1]


def message_type(module: str, rust_type: str, is_map: bool) -> tuple[str, str]:
    rest = CONTAINER.sub("", rust_type)
    paths = TYPE_PATH.findall(rest)
    if len(paths) != 1:
        raise GenError(f"cannot find the message type in `{rust_type}` ({module})")
    return resolve(module, paths[0])


def parse_pb_module(src: str, module: str) -> dict[str, list[PbField]]:
    path = os.path.join(src, *module.split("::"), "mod.rs")
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    structs: dict[str, list[PbField]] = {}
    current: list[PbField] | None = None
    i = 0
    while i < len(lines):
        line = lines[i].strip()
        i += 1
        m = STRUCT.match(line)
        if m:
            current = structs.setdefault(m.group(1), [])
            continue
        if line == "}":
            current = None
            continue
        if current is None or not line.startswith("#[prost("):
            continue
        attr = line
        while not attr.endswith(")]"):
            attr += " " + lines[i].strip()
            i += 1
        body = PROST_ATTR.match(attr)
        if not body:
            raise GenError(f"unparsed attribute {attr} in {path}")
        # The field declaration follows (doc comments may not sit between, but be lenient).
        decl = ""
        while True:
            nxt = lines[i].strip()
            i += 1
            if nxt.startswith("///") or nxt.startswith("#["):
                continue
            decl += " " + nxt
            # A long type wraps over lines; it ends at a comma outside any `<...>`.
            if decl.rstrip().endswith(",") and decl.count("<") == decl.count(">"):
                break
        fm = FIELD.match(decl.strip().rstrip(","))
        if not fm:
            raise GenError(f"unparsed field `{decl}` in {path}")
        current.append(parse_pb_field(module, body.group(1), fm.group(1), fm.group(2)))
    return structs


def parse_pb_field(module: str, attr: str, name: str, rust_type: str) -> PbField:
    tag = re.search(r'tag\s*=\s*"(\d+)"', attr)
    if not tag:
        raise GenError(f"no tag in #[prost({attr})]")
    number = int(tag.group(1))
    mm = re.match(r'(?:btree_map|map|hash_map)\s*=\s*"(\w+),\s*(\w+)"', attr)
    if mm:
        key, value = mm.group(1), mm.group(2)
        if key != "string":
            raise GenError(f"map key {key} in {module}.{name}: only string keys are supported")
        if value == "message":
            pm, ps = message_type(module, rust_type.split(",", 1)[1], True)
            return PbField(number, name, "Message", "Map", f"{pm}::{ps}")
        if value not in SCALARS:
            raise GenError(f"map value {value} in {module}.{name}")
        return PbField(number, name, SCALARS[value], "Map", None)
    kind = re.match(r"(\w+)", attr).group(1)
    shape = "Repeated" if re.search(r"\brepeated\b", attr) else "Single"
    if kind == "message":
        pm, ps = message_type(module, rust_type, False)
        return PbField(number, name, "Message", shape, f"{pm}::{ps}")
    if kind not in SCALARS:
        raise GenError(f"unsupported protobuf kind {kind} in {module}.{name}")
    return PbField(number, name, SCALARS[kind], shape, None)


# ---------------------------------------------------------------------------------------------
# Go types

GO_STRUCT = re.compile(r"^type (\w+) struct \{\s*$")
GO_FIELD = re.compile(r"^([\w.*\[\]]+)(?:\s+([^`]+?))?\s*`([^`]*)`")


def parse_go_package(directory: str) -> dict[str, dict[int, GoField]]:
    out: dict[str, dict[int, GoField]] = {}
    files = sorted(glob.glob(os.path.join(directory, "*.go")))
    if not files:
        raise GenError(f"no Go sources in {directory}")
    for path in files:
        base = os.path.basename(path)
        if base.endswith("_test.go") or base.startswith("zz_generated") or "generated" in base:
            continue
        with open(path, encoding="utf-8") as f:
            lines = f.read().split("\n")
        i = 0
        while i < len(lines):
            m = GO_STRUCT.match(lines[i])
            i += 1
            if not m:
                continue
            fields = out.setdefault(m.group(1), {})
            depth = 1
            while i < len(lines) and depth > 0:
                raw = lines[i]
                i += 1
                s = raw.strip()
                if s.startswith("//") or not s:
                    continue
                depth += s.count("{") - s.count("}")
                if depth != 1:
                    continue
                gf = parse_go_field(s)
                if gf is not None:
                    if gf.number in fields:
                        raise GenError(f"{m.group(1)} has two fields numbered {gf.number} ({path})")
                    fields[gf.number] = gf
    return out


def parse_go_field(line: str) -> GoField | None:
    m = GO_FIELD.match(line)
    if not m:
        return None
    tags = dict(re.findall(r'(\w+):"([^"]*)"', m.group(3)))
    if "protobuf" not in tags or tags["protobuf"] == "-":
        return None
    if m.group(2):
        go_name, go_type = m.group(1), m.group(2).strip()
    else:  # embedded: `metav1.ObjectMeta` or `VolumeSource`
        go_type = m.group(1)
        go_name = go_type.lstrip("*").split(".")[-1]
    pb = tags["protobuf"].split(",")
    # `wire,number[,label][,key=value...]`: some hand-written tags omit the label.
    opts = dict(p.split("=", 1) for p in pb[2:] if "=" in p)
    label = pb[2] if len(pb) > 2 and "=" not in pb[2] else ""
    # Without a json tag Go's encoder uses the field name, and never omits it.
    js = tags.get("json", go_name).split(",")
    return GoField(
        go_name=go_name,
        go_type=go_type,
        number=int(pb[1]),
        wire=pb[0],
        label=label,
        proto_name=opts.get("name"),
        json_name=js[0],
        omitempty="omitempty" in js[1:],
        omitzero="omitzero" in js[1:],
        inline="inline" in js[1:],
        skip=js[0] == "-",
    )


# ---------------------------------------------------------------------------------------------
# Joining the two


def norm(name: str) -> str:
    return name.replace("_", "").lower()


@dataclasses.dataclass
class Field:
    number: int
    json: str
    kind: str
    shape: str
    message: str | None  # k8s-pb "module::Struct" key
    omit_zero: bool
    inline: bool
    skip: bool


@dataclasses.dataclass
class Message:
    key: str  # k8s-pb "module::Struct"
    proto: str  # proto full name, Go's type name
    special: str | None
    fields: list[Field]


class Sources:
    def __init__(self, k8s_pb: str, api_src: str, apimachinery_src: str):
        self.k8s_pb = k8s_pb
        self.api_src = api_src
        self.apimachinery_src = apimachinery_src
        self.pb: dict[str, dict[str, list[PbField]]] = {}
        self.go: dict[str, dict[str, dict[int, GoField]]] = {}

    def pb_module(self, module: str) -> dict[str, list[PbField]]:
        if module not in self.pb:
            self.pb[module] = parse_pb_module(self.k8s_pb, module)
        return self.pb[module]

    def go_package(self, module: str) -> dict[str, dict[int, GoField]]:
        if module not in self.go:
            self.go[module] = parse_go_package(go_dir(module, self.api_src, self.apimachinery_src))
        return self.go[module]

    def message(self, key: str) -> Message:
        module, struct = key.rsplit("::", 1)
        pb_fields = self.pb_module(module).get(struct)
        if pb_fields is None:
            raise GenError(f"k8s-pb has no message {key}")
        go_structs = self.go_package(module)
        # k8s-pb re-cases some type names (HostIP -> HostIp); Go's spelling is the proto's.
        go_names = [n for n in go_structs if n.lower() == struct.lower()]
        proto_pkg = proto_package(module)
        special = SPECIAL.get(f"{proto_pkg}.{go_names[0] if go_names else struct}")
        if len(go_names) != 1:
            if special is None:
                raise GenError(f"no unique Go struct for {key}: {go_names}")
            go_name, go_fields = struct, {}
        else:
            go_name = go_names[0]
            go_fields = go_structs[go_name]
        fields = []
        for pf in pb_fields:
            gf = go_fields.get(pf.number)
            if gf is None:
                if special is None:
                    raise GenError(f"{key} field {pf.rust_name} ({pf.number}) has no Go field")
                # Special types (Time, MicroTime) marshal by hand; their proto fields are the
                # Timestamp's and have no JSON name of their own.
                fields.append(
                    Field(pf.number, pf.rust_name, pf.kind, pf.shape, pf.message, False, False, False)
                )
                continue
            check_pair(key, pf, gf, special is not None)
            fields.append(
                Field(
                    number=pf.number,
                    # An inline field has no JSON name of its own; its proto name is shown.
                    json=(gf.proto_name or gf.go_name) if gf.inline else (gf.json_name or gf.proto_name or pf.rust_name),
                    kind=pf.kind,
                    shape=pf.shape,
                    message=pf.message,
                    omit_zero=omit_zero(pf, gf),
                    inline=gf.inline,
                    skip=gf.skip,
                )
            )
        extra = set(go_fields) - {pf.number for pf in pb_fields}
        if extra:
            raise GenError(f"Go {go_name} has protobuf fields {sorted(extra)} that k8s-pb lacks")
        fields.sort(key=lambda f: f.number)  # the decoder binary-searches by number
        return Message(key, f"{proto_pkg}.{go_name}", special, fields)


def omit_zero(pf: PbField, gf: GoField) -> bool:
    """Whether Go's JSON leaves the field out when its value is zero.

    gogo writes every non-pointer field, zero or not, so presence on the wire says nothing for
    those; Go's JSON then drops a zero scalar under `omitempty` or `omitzero`, and a zero struct
    only under `omitzero` (ObjectMeta.creationTimestamp). A pointer's zero is a set value and
    stays (`replicas: 0`); a nil pointer is simply absent from the wire. Repeated fields and
    maps are absent when empty.
    """
    if pf.shape != "Single" or gf.go_type.startswith("*"):
        return False
    if pf.kind == "Message":
        return gf.omitzero
    return gf.omitempty or gf.omitzero


def check_pair(key: str, pf: PbField, gf: GoField, special: bool) -> None:
    where = f"{key} field {pf.number}"
    # The proto field name is the JSON name except for inline/skipped fields; prost snake-cases
    # it, and k8s-pb re-cases acronyms (cluster_ips), so compare case- and underscore-blind.
    names = {norm(n) for n in (gf.proto_name, gf.json_name, gf.go_name) if n}
    if norm(pf.rust_name) not in names:
        raise GenError(f"{where}: k8s-pb calls it {pf.rust_name}, Go {gf.go_name} {gf.json_name}")
    if GO_WIRE[pf.kind] != gf.wire:
        # The generated .proto (hence k8s-pb) is what gogo encodes with; a few hand-written Go
        # tags are stale (DeleteOptions.propagationPolicy says varint for a string), so the
        # wire type is taken from k8s-pb and a disagreement only noted.
        note(f"{where}: k8s-pb kind {pf.kind}, Go tag says {gf.wire}")
    repeated = pf.shape in ("Repeated", "Map")
    if repeated != (gf.label == "rep"):
        # Likewise stale: EndpointSlice.addressType is tagged `rep` but is a single string.
        note(f"{where}: k8s-pb shape {pf.shape}, Go tag says {gf.label}")
    if gf.inline and (pf.kind != "Message" or pf.shape != "Single"):
        raise GenError(f"{where}: only single messages can be inlined")
    # Special types marshal JSON by hand (IntOrString's fields have no json tags).
    if not special and not gf.inline and not gf.skip and not gf.json_name:
        raise GenError(f"{where}: no JSON name")


def collect(src: Sources) -> tuple[list[Message], list[tuple[str, str, str]]]:
    seen: dict[str, Message] = {}
    queue = [f"{module}::{struct}" for _, _, module, struct in ROOTS]
    queue += [f"{module}::{struct}" for module, struct in EXTRA]
    while queue:
        key = queue.pop()
        if key in seen:
            continue
        msg = src.message(key)
        seen[key] = msg
        queue.extend(f.message for f in msg.fields if f.message)
    messages = sorted(seen.values(), key=lambda m: m.proto)
    roots = [(av, kind, f"{module}::{struct}") for av, kind, module, struct in ROOTS]
    return messages, roots


def render(messages: list[Message], roots: list[tuple[str, str, str]]) -> str:
    index = {m.key: i for i, m in enumerate(messages)}
    out = [
        "// @generated by scripts/gen_protobuf_schema.py -- DO NOT EDIT.",
        f"// Sources: the k8s-pb {K8S_PB_VERSION} crate (field numbers, kinds, shapes, nesting) and the",
        f"// Go types of kubernetes/api and kubernetes/apimachinery {KUBE_TAG} (JSON names, inline",
        "// embedding, which zero values survive JSON). Regenerate after bumping either; see the",
        "// script's docstring. `protobuf::tests::openapi::schema` checks it against k8s-openapi.",
        "",
        "use super::table::{Field, Kind, Message, Root, Shape, Special};",
        "",
        f"/// Kubernetes release the table describes (the Go sources' staging tag).",
        f'pub const KUBE_TAG: &str = "{KUBE_TAG}";',
        "",
        "/// Every message the served kinds reach, sorted by proto name; `Kind::Message` indexes it.",
        "pub static MESSAGES: &[Message] = &[",
    ]
    for i, m in enumerate(messages):
        special = f"Some(Special::{m.special})" if m.special else "None"
        out.append(f"    // {i}")
        out.append("    Message {")
        out.append(f'        name: "{m.proto}",')
        out.append(f"        special: {special},")
        if not m.fields:
            out.append("        fields: &[],")
        else:
            out.append("        fields: &[")
            for f in m.fields:
                kind = f"Kind::Message({index[f.message]})" if f.kind == "Message" else f"Kind::{f.kind}"
                out.append(
                    f'            Field {{ number: {f.number}, json: "{f.json}", kind: {kind}, '
                    f"shape: Shape::{f.shape}, omit_zero: {str(f.omit_zero).lower()}, "
                    f"inline: {str(f.inline).lower()}, skip: {str(f.skip).lower()} }},"
                )
            out.append("        ],")
        out.append("    },")
    out.append("];")
    out.append("")
    out.append('/// The kinds a protobuf body may carry; apiVersion `"*"` matches any.')
    out.append("pub static ROOTS: &[Root] = &[")
    for av, kind, key in roots:
        out.append(
            f'    Root {{ api_version: "{av}", kind: "{kind}", message: {index[key]} }},'
        )
    out.append("];")
    out.append("")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--k8s-pb", help="k8s-pb's src/ directory (default: from cargo metadata)")
    ap.add_argument("--api-src", required=True, help=f"kubernetes/api checkout at {KUBE_TAG}")
    ap.add_argument(
        "--apimachinery-src", required=True, help=f"kubernetes/apimachinery checkout at {KUBE_TAG}"
    )
    ap.add_argument("--check", action="store_true", help="fail if the committed table differs")
    ap.add_argument("-v", "--verbose", action="store_true", help="show stale Go tags k8s-pb overrides")
    args = ap.parse_args()
    global VERBOSE
    VERBOSE = args.verbose
    try:
        k8s_pb = args.k8s_pb or locate_k8s_pb()
        messages, roots = collect(Sources(k8s_pb, args.api_src, args.apimachinery_src))
    except GenError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    text = render(messages, roots)
    if args.check:
        try:
            with open(OUT, encoding="utf-8") as f:
                current = f.read()
        except FileNotFoundError:
            current = ""
        if current != text:
            print(f"{OUT} is stale: rerun without --check", file=sys.stderr)
            return 1
        print(f"{OUT} is up to date ({len(messages)} messages)")
        return 0
    with open(OUT, "w", encoding="utf-8") as f:
        f.write(text)
    print(f"wrote {OUT}: {len(messages)} messages, {len(roots)} roots")
    return 0


if __name__ == "__main__":
    sys.exit(main())
