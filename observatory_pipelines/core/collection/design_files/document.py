"""The design file format: its JSON Schema, reading files into checked documents, writing them back.

A *document* is one design as plain data, in the file's shape with every default filled in (see
``DEFAULTS``). Files are read into documents, the database is read into documents
(``state.read_document``), and the two are compared; so a field has one meaning everywhere.

Every check that needs no database runs here and reports *every* error it finds, each as
``FILE:LINE: FIELD: message``; the checks that need the database (owner, actors) are in ``plan``.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

import jsonschema
import yaml

from observatory_pipelines.core.collection import terms as term_grammar
from observatory_pipelines.core.collection.arenas import get_arena, registry
from observatory_pipelines.core.collection.designs import SETTING_KEYS, arena_settings, check_slug
from observatory_pipelines.core.collection.tiers import Tier
from observatory_pipelines.core.models.query_design import EXPORT_IDENTITIES
from observatory_pipelines.core.platform.errors import ConfigError

#: Design files are the ``*.yaml`` / ``*.yml`` files directly in the designs folder; anything else
#: there (the schema, a README) is not a design.
SUFFIXES = (".yaml", ".yml")
#: The schema's file name in the designs folder, which the design files' first line points editors at.
SCHEMA_FILE = "schema.json"
SCHEMA_COMMENT = f"# yaml-language-server: $schema={SCHEMA_FILE}"
#: ``package:PATH`` names a file inside the installed ``observatory_pipelines`` package (the demo's
#: feeds), so a design file does not depend on where the checkout is. It is stored as the
#: ``file://`` URI it resolves to (what the arenas read) and exported back in this form.
PACKAGE_PREFIX = "package:"

DEFAULTS: dict[str, Any] = {
    "description": None,
    "default_tier": Tier.FREE.value,
    "language": "da",
    "country": "dk",
    "active": True,
    "export_identity": "pseudonymised",
    "identity_legal_basis": None,
    "terms": [],
    "actor_lists": [],
    "arenas": {},
}
#: The order fields are written in (export) and shown in (diff).
FIELDS = (
    "slug",
    "name",
    "owner",
    "description",
    "default_tier",
    "language",
    "country",
    "active",
    "export_identity",
    "identity_legal_basis",
    "terms",
    "actor_lists",
    "arenas",
)


# --- errors ---------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class DesignFileError:
    """One problem in one design file, at a line, in a field (``actor_lists[0].actors[1].name``)."""

    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.field}: {self.message}"


class DesignFilesInvalid(ConfigError):
    """Design files with errors: nothing was applied. ``errors`` holds every one; ``str()`` is one line."""

    def __init__(self, errors: list[DesignFileError]):
        self.errors = sorted(errors)
        first = self.errors[0]
        more = f" (and {len(self.errors) - 1} more)" if len(self.errors) > 1 else ""
        super().__init__(f"design files have {len(self.errors)} error(s), nothing applied: {first}{more}")


# --- the schema -----------------------------------------------------------------------------------


def _account_schema() -> dict[str, Any]:
    identifier = {"type": ["string", "integer"], "minLength": 1}
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["platform"],
        "properties": {
            "platform": {"type": "string", "minLength": 1, "description": "e.g. x_twitter, bluesky, facebook"},
            "handle": {**identifier, "description": "the account's username on the platform"},
            "user_id": {**identifier, "description": "the platform's stable id for the account"},
        },
        "anyOf": [{"required": ["handle"]}, {"required": ["user_id"]}],
        "x-message": "an account needs a handle or a user_id",
    }


def schema() -> dict[str, Any]:
    """The JSON Schema of a design file. The arena part is built from the arena registry and the
    settings keys, for editors; the loader leaves judging arena settings to ``designs.arena_settings``."""
    text = {"type": "string", "minLength": 1}
    tiers = [t.value for t in Tier]
    actor = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "accounts"],
        "properties": {
            "name": {**text, "description": "the actor's canonical name"},
            "type": {**text, "description": "person, organization, media_outlet, ... (default: unknown)"},
            "public_figure": {"type": "boolean", "description": "public figures are not pseudonymised"},
            "accounts": {"type": "array", "minItems": 1, "items": _account_schema()},
        },
    }
    actor_list = {
        "type": "object",
        "additionalProperties": False,
        "required": ["name", "actors"],
        "properties": {
            "name": text,
            "description": {"type": ["string", "null"]},
            "actors": {"type": "array", "items": actor},
        },
    }
    arena = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "enabled": {"type": "boolean"},
            "tier": {"enum": tiers},
            "options": {"type": "object", "description": "the arena's own options (docs/collection.md)"},
        },
    }
    assert set(arena["properties"]) == SETTING_KEYS  # type: ignore[call-overload]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Query design",
        "description": "One query design of the observatory (docs/designs.md). The file is named <slug>.yaml.",
        "type": "object",
        "additionalProperties": False,
        "required": ["slug", "name", "owner"],
        "properties": {
            "slug": {
                "type": "string",
                "pattern": r"^[a-z0-9]+(-[a-z0-9]+)*$",
                "description": "lowercase letters, digits and single hyphens; the file's name without .yaml",
            },
            "name": text,
            "owner": {**text, "description": "an existing user's email (observatory users add EMAIL)"},
            "description": {"type": ["string", "null"]},
            "default_tier": {"enum": tiers},
            "language": text,
            "country": text,
            "active": {"type": "boolean"},
            "export_identity": {"enum": list(EXPORT_IDENTITIES)},
            "identity_legal_basis": {"type": ["string", "null"]},
            "terms": {
                "type": "array",
                "items": {**text, "description": 'the term grammar: words (all of), "a phrase", #hashtag, OR, -not'},
            },
            "actor_lists": {"type": "array", "items": actor_list},
            "arenas": {
                "type": "object",
                "propertyNames": {"enum": list(registry())},
                "additionalProperties": arena,
            },
        },
        "if": {"properties": {"export_identity": {"const": "identified"}}, "required": ["export_identity"]},
        "then": {
            "required": ["identity_legal_basis"],
            "properties": {"identity_legal_basis": {"type": "string", "pattern": r"\S"}},
        },
    }


def schema_json() -> str:
    return json.dumps(schema(), indent=2, ensure_ascii=False) + "\n"


# --- reading --------------------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def field_name(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(file)"


@dataclass
class DesignFile:
    """One design file, read and checked: its document and where each field is written."""

    path: Path
    document: dict[str, Any]
    lines: dict[Path_, int]

    @property
    def name(self) -> str:
        """The file's name inside the designs folder (``query_designs.source_file``)."""
        return self.path.name

    @property
    def slug(self) -> str:
        return self.document["slug"]

    def line_of(self, path: Path_) -> int:
        while path not in self.lines and path:
            path = path[:-1]
        return self.lines.get(path, 1)

    def error(self, path: Path_, message: str) -> DesignFileError:
        return DesignFileError(str(self.path), self.line_of(path), field_name(path), message)


def design_file_paths(folder: Path) -> list[Path]:
    """The design files in ``folder`` (not its subfolders), by name; ``ConfigError`` if it is no folder."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise ConfigError(
            f"the designs folder {folder} {what}; create it or set OBSERVATORY_DESIGNS_DIR to the folder of design files"
        )
    return sorted(p for p in folder.iterdir() if p.suffix in SUFFIXES and p.is_file() and not p.name.startswith("."))


def folder_fingerprint(folder: Path) -> str:
    """A hash of the design files in ``folder`` (names and bytes): equal hashes, nothing to apply."""
    digest = hashlib.sha256()
    for path in design_file_paths(folder):
        data = path.read_bytes()
        digest.update(f"{path.name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def _line_map(node: yaml.Node, path: Path_, lines: dict[Path_, int], duplicates: list[tuple[Path_, int]]) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: set[Any] = set()
        for key, value in node.value:
            name = key.value if isinstance(key, yaml.ScalarNode) else str(key.start_mark)
            if name in seen:
                duplicates.append(((*path, name), key.start_mark.line + 1))
            seen.add(name)
            lines[(*path, name)] = key.start_mark.line + 1
            _line_map(value, (*path, name), lines, duplicates)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            lines[(*path, index)] = item.start_mark.line + 1
            _line_map(item, (*path, index), lines, duplicates)


def _parse_yaml(path: Path) -> tuple[Any, dict[Path_, int], list[DesignFileError]]:
    where = str(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as err:
        line = path.read_bytes()[: err.start].count(b"\n") + 1
        return None, {}, [DesignFileError(where, line, "(file)", "not UTF-8 text; save the file as UTF-8")]
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else 1
        problem = f"{err.problem} ({err.context})" if err.context else str(err.problem)
        return None, {}, [DesignFileError(where, line, "(yaml)", f"not valid YAML: {problem}")]
    except yaml.YAMLError as err:
        return None, {}, [DesignFileError(where, 1, "(yaml)", f"not valid YAML: {str(err).splitlines()[0]}")]
    finally:
        loader.dispose()
    lines: dict[Path_, int] = {}
    duplicates: list[tuple[Path_, int]] = []
    if node is not None:
        _line_map(node, (), lines, duplicates)
    errors = [
        DesignFileError(where, line, field_name(p), "written twice; YAML keeps only the last one")
        for p, line in duplicates
    ]
    return data, lines, errors


def _schema_errors(design: DesignFile, data: Any) -> Iterator[DesignFileError]:
    validator = jsonschema.Draft202012Validator(schema())
    for err in validator.iter_errors(data):
        path: Path_ = tuple(err.absolute_path)
        # Arena settings have one judge, designs.arena_settings (called in _arena_errors).
        if path[:1] == ("arenas",) and not (path == ("arenas",) and err.validator == "type"):
            continue
        if err.validator == "required":
            match = re.match(r"'(.+)' is a required property", err.message)
            missing = match.group(1) if match else "?"
            yield design.error((*path, missing), "missing; this field is required")
        elif err.validator == "additionalProperties" and isinstance(err.instance, Mapping):
            allowed = list(err.schema.get("properties", {}))
            for key in sorted(set(err.instance) - set(allowed), key=str):
                yield design.error((*path, key), f"unknown field; allowed: {', '.join(allowed)}")
        elif isinstance(err.schema, Mapping) and "x-message" in err.schema:
            yield design.error(path, err.schema["x-message"])
        elif err.validator == "pattern" and path == ("identity_legal_basis",):
            yield design.error(path, "must say why identified exports are lawful (it is empty)")
        else:
            yield design.error(path, err.message)


def resolve_package_uri(value: str) -> str:
    """The ``file://`` URI of ``package:PATH``; ``ValueError`` when it names no file in the package."""
    relative = PurePosixPath(value[len(PACKAGE_PREFIX) :].strip())
    if relative.is_absolute() or ".." in relative.parts or not relative.parts:
        raise ValueError(f"'{value}' must name a file inside the observatory_pipelines package, without '..'")
    target = Path(str(resources.files("observatory_pipelines"))).joinpath(*relative.parts).resolve()
    if not target.is_file():
        raise ValueError(f"'{value}' names no file in the observatory_pipelines package")
    return target.as_uri()


def package_form(value: str) -> str:
    """``package:PATH`` for a ``file://`` URI inside the package (the inverse of ``resolve_package_uri``)."""
    parts = urlsplit(value)
    if parts.scheme != "file":
        return value
    root = Path(str(resources.files("observatory_pipelines"))).resolve()
    target = Path(url2pathname(unquote(parts.path)))
    if not target.is_relative_to(root):
        return value
    return PACKAGE_PREFIX + target.relative_to(root).as_posix()


def map_strings(value: Any, change) -> Any:
    if isinstance(value, str):
        return change(value)
    if isinstance(value, list):
        return [map_strings(v, change) for v in value]
    if isinstance(value, Mapping):
        return {k: map_strings(v, change) for k, v in value.items()}
    return value


def _resolve_options(design: DesignFile, name: str, options: Any, errors: list[DesignFileError]) -> Any:
    def walk(value: Any, path: Path_) -> Any:
        if isinstance(value, str) and value.startswith(PACKAGE_PREFIX):
            try:
                return resolve_package_uri(value)
            except ValueError as err:
                errors.append(design.error(path, str(err)))
                return value
        if isinstance(value, list):
            return [walk(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, Mapping):
            return {k: walk(v, (*path, k)) for k, v in value.items()}
        return value

    return walk(options, ("arenas", name, "options"))


def _arena_errors(design: DesignFile, arenas: Mapping[str, Any], tier: Tier) -> Iterator[DesignFileError]:
    """Each arena's settings judged by ``designs.arena_settings``, one error per arena."""
    known = registry()
    any_arena = next(iter(known))
    written = design.document.get("slug")
    slug = written if isinstance(written, str) else "?"
    prefix = f"query design '{slug}', arenas_config"
    for name, settings in arenas.items():
        try:
            arena_settings(slug, {name: settings}, get_arena(name if name in known else any_arena), tier)
        except ConfigError as err:
            message = str(err).removeprefix(prefix).removeprefix(f".{name}").lstrip(".: ")
            key = message.split(" ", 1)[0].split(".", 1)[0].rstrip(":")
            if key in SETTING_KEYS:
                yield design.error(("arenas", name, key), message[len(key) :].lstrip(".: "))
            else:
                yield design.error(("arenas", name), message.removeprefix("names "))


def _term_errors(design: DesignFile, terms: list[Any]) -> Iterator[DesignFileError]:
    seen: dict[str, int] = {}
    for index, term in enumerate(terms):
        if not isinstance(term, str):
            continue  # the schema reported it
        written = term.strip()
        try:
            written = term_grammar.parse_term(written).text
        except term_grammar.TermSyntaxError as err:
            yield design.error(("terms", index), f"{written!r}: {err}")
        if written in seen:
            yield design.error(("terms", index), f"{written!r} is already terms[{seen[written]}]")
        seen.setdefault(written, index)


def _actor_list_errors(design: DesignFile, actor_lists: list[Any]) -> Iterator[DesignFileError]:
    names: set[Any] = set()
    for i, actor_list in enumerate(actor_lists):
        if not isinstance(actor_list, Mapping):
            continue
        name = actor_list.get("name")
        if name in names:
            yield design.error(("actor_lists", i, "name"), f"a list named {name!r} is already in this file")
        names.add(name)
        accounts: set[tuple[str, str]] = set()
        for j, actor in enumerate(actor_list.get("actors") or []):
            if not isinstance(actor, Mapping):
                continue
            for k, account in enumerate(actor.get("accounts") or []):
                if not isinstance(account, Mapping):
                    continue
                key = (str(account.get("platform")), str(account.get("user_id") or account.get("handle")))
                if key in accounts:
                    yield design.error(
                        ("actor_lists", i, "actors", j, "accounts", k), f"account {key[0]}:{key[1]} is already listed"
                    )
                accounts.add(key)


def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip()


def normalise(data: Mapping[str, Any]) -> dict[str, Any]:
    """A checked file's data as a document: defaults filled in, text stripped, ids as text."""
    document = {field: copy.deepcopy(data.get(field, DEFAULTS.get(field))) for field in FIELDS}
    # As the grammar reads them (stripped, NFC): "ø" typed two ways is one term, not two.
    document["terms"] = [term_grammar.parse_term(term).text for term in document["terms"]]
    document["actor_lists"] = [
        {
            "name": actor_list["name"],
            "description": actor_list.get("description"),
            "actors": [
                {
                    "name": actor["name"],
                    "type": actor.get("type"),
                    "public_figure": actor.get("public_figure"),
                    "accounts": [
                        {
                            "platform": account["platform"],
                            "handle": _text(account.get("handle")),
                            "user_id": _text(account.get("user_id")),
                        }
                        for account in actor["accounts"]
                    ],
                }
                for actor in actor_list["actors"]
            ],
        }
        for actor_list in document["actor_lists"]
    ]
    return document


def read_design_file(path: Path) -> tuple[DesignFile | None, list[DesignFileError]]:
    """One file read and checked without the database: the design, or ``None`` and every error found."""
    data, lines, errors = _parse_yaml(path)
    design = DesignFile(path=path, document={}, lines=lines)
    if errors and data is None:
        return None, errors
    if not isinstance(data, Mapping):
        what = "empty" if data is None else f"a {type(data).__name__}"
        return None, [
            *errors,
            design.error((), f"the file is {what}; a design file is a mapping (slug: ..., name: ...)"),
        ]
    design.document = dict(data)
    errors += _schema_errors(design, data)
    slug = data.get("slug")
    if isinstance(slug, str) and slug != path.stem:
        errors.append(
            design.error(("slug",), f"'{slug}' must be the file's name without {path.suffix} ('{path.stem}')")
        )
    elif isinstance(slug, str):
        try:
            check_slug(slug)
        except ConfigError:
            pass  # the schema's pattern reported it
    if isinstance(data.get("terms"), list):
        errors += _term_errors(design, data["terms"])
    if isinstance(data.get("actor_lists"), list):
        errors += _actor_list_errors(design, data["actor_lists"])
    arenas = data.get("arenas")
    if isinstance(arenas, Mapping):
        resolved = {name: dict(v) if isinstance(v, Mapping) else v for name, v in arenas.items()}
        unresolved = set()
        for name, settings in resolved.items():
            if isinstance(settings, dict) and "options" in settings:
                before = len(errors)
                settings["options"] = _resolve_options(design, name, settings["options"], errors)
                if len(errors) > before:
                    unresolved.add(name)  # its error is said; the arena would only repeat it
        try:
            tier = Tier.parse(data.get("default_tier", DEFAULTS["default_tier"]))
        except ValueError:
            tier = Tier.FREE
        errors += _arena_errors(design, {k: v for k, v in resolved.items() if k not in unresolved}, tier)
        design.document["arenas"] = resolved
    if errors:
        return None, errors
    design.document = normalise(design.document)
    return design, []


@dataclass(frozen=True)
class DesignFiles:
    """What a path held: its designs, and whether it was the whole folder (only then are designs
    whose file is gone deactivated)."""

    designs: list[DesignFile]
    whole_folder: bool
    folder: Path


def read_design_files(path: Path) -> DesignFiles:
    """The design file ``path`` or every design file in the folder ``path``, checked without the
    database; ``DesignFilesInvalid`` with every error when any file has one."""
    if path.is_file():
        paths, whole_folder, folder = [path], False, path.parent
    else:
        paths, whole_folder, folder = design_file_paths(path), True, path
    designs: list[DesignFile] = []
    errors: list[DesignFileError] = []
    for file in paths:
        design, found = read_design_file(file)
        errors += found
        if design is not None:
            designs.append(design)
    first_file: dict[str, DesignFile] = {}
    for design in designs:
        if design.slug in first_file:
            other = first_file[design.slug]
            errors.append(design.error(("slug",), f"'{design.slug}' is also the slug in {other.path}"))
        first_file.setdefault(design.slug, design)
    if errors:
        raise DesignFilesInvalid(errors)
    return DesignFiles(designs=designs, whole_folder=whole_folder, folder=folder)


# --- writing --------------------------------------------------------------------------------------


def _sorted(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


def _settings_in_order(settings: Any) -> Any:
    """One arena's settings in a stable order (JSONB keeps keys in its own order, not the file's)."""
    if not isinstance(settings, Mapping):
        return settings
    ordered = {key: settings[key] for key in ("enabled", "tier", "options") if key in settings}
    if "options" in ordered:
        ordered["options"] = map_strings(_sorted(ordered["options"]), package_form)
    return ordered


def to_yaml(document: Mapping[str, Any]) -> str:
    """A document as a design file: fields in ``FIELDS`` order, arenas by name, empty optional
    fields left out, files of the package in their ``package:`` form."""
    out = {field: document.get(field) for field in FIELDS if document.get(field) is not None}
    out["actor_lists"] = [
        {
            **{k: v for k, v in actor_list.items() if k != "description" or v is not None},
            "actors": [
                {
                    **{k: v for k, v in actor.items() if k != "accounts" and v is not None},
                    "accounts": [{k: v for k, v in a.items() if v is not None} for a in actor["accounts"]],
                }
                for actor in actor_list["actors"]
            ],
        }
        for actor_list in document.get("actor_lists", [])
    ]
    if not out["actor_lists"]:
        del out["actor_lists"]
    out["arenas"] = {
        name: _settings_in_order(settings) for name, settings in sorted((document.get("arenas") or {}).items())
    }
    body = yaml.safe_dump(out, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)
    return f"{SCHEMA_COMMENT}\n{body}"
