"""Field specs: the one place where the admin API turns untrusted input into Python values.

Each route declares its path parameters, query parameters and JSON body as `Field` specs. A spec
parses a value (naming the field in every refusal, e.g. `filters.max_pages: expected an
integer`) and describes itself as a JSON Schema, so the OpenAPI document is generated from the
very objects that validate requests and cannot drift from them.

Parsing is strict on purpose: unknown fields, floats where integers or money are expected,
duplicate keys, NUL characters and out-of-range numbers are refused, so that a typo in a script
surfaces as a 400 instead of being silently ignored.
"""

from __future__ import annotations

import enum
import json
import re
import uuid as uuidlib
from dataclasses import dataclass
from datetime import datetime, time, timezone
from decimal import Decimal

from pcnet.domain import rules as R
from pcnet.domain.rules import MAX_MONEY
from pcnet.errors import InvalidInput
from pcnet.money import MONEY_PATTERN, format_money, parse_money

#: Returned by `Object.parse` for absent optional fields that have no default.
MISSING = object()

_MAX_ID = 2 ** 63 - 1


class InvalidField(InvalidInput):
    """Invalid input in one named field. `field` is the dotted path of the field."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}" if field else message, field=field)


def _type_name(value) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number with a fraction"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _join(path: str, key) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


class Field:
    """One value of a request. Subclasses implement `_parse` (JSON value -> Python value) and
    `_schema` (JSON Schema); `from_text` parses a path segment or query string value."""

    def __init__(self, *, required: bool = False, nullable: bool = False, default=MISSING,
                 description: str = "", example=MISSING):
        self.required = required
        self.nullable = nullable
        self.default = default
        self.description = description
        self.example = example

    def parse(self, value, name: str):
        if value is None:
            if self.nullable:
                return None
            raise InvalidField(name, "must not be null")
        return self._parse(value, name)

    def from_text(self, text: str, name: str):
        """Parse a value that arrived as text (a path segment or a query parameter)."""
        return self.parse(text, name)

    def text_schema(self) -> dict:
        """The schema of this value where it travels as text (a path segment, a query value)."""
        return self.schema()

    def schema(self) -> dict:
        out = dict(self._schema())
        if self.nullable:
            t = out.get("type")
            if isinstance(t, str):
                out["type"] = [t, "null"]
            elif isinstance(t, list):
                out["type"] = [*t, "null"]
            elif "oneOf" in out:
                out["oneOf"] = out["oneOf"] + [{"type": "null"}]
            elif "$ref" in out:
                out = {"oneOf": [out, {"type": "null"}]}
        if self.description:
            out["description"] = self.description
        if self.default is not MISSING and self.default is not None and _jsonable(self.default):
            out["default"] = self._default_json()
        if self.example is not MISSING:
            out["examples"] = [self.example]
        return out

    def _default_json(self):
        d = self.default
        if isinstance(d, enum.Enum):
            return d.value
        if isinstance(d, Decimal):
            return format_money(d)
        if isinstance(d, tuple):
            return list(d)
        return d

    def _parse(self, value, name):  # pragma: no cover - abstract
        raise NotImplementedError

    def _schema(self) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError


def _jsonable(value) -> bool:
    return isinstance(value, (str, int, bool, Decimal, enum.Enum, tuple, list))


class String(Field):
    """Text, checked by a rule of `pcnet.domain.rules` (`rule=`, the one definition the
    service layer applies too), or by one made of the keywords: single-line unless
    `multiline`; NUL, other control characters and unpaired surrogates are always refused
    (they break databases and terminals)."""

    def __init__(self, *, rule: R.Text | None = None, min_length: int = 0, max_length: int = 255,
                 multiline: bool = False, pattern: str | None = None, pattern_hint: str = "",
                 strip_check: bool = True, **kw):
        super().__init__(**kw)
        self.rule = rule or R.Text(min_length=min_length, max_length=max_length, pattern=pattern,
                                   hint=pattern_hint, multiline=multiline, strip_check=strip_check)

    @property
    def min_length(self) -> int:
        return self.rule.min_length

    @property
    def max_length(self) -> int:
        return self.rule.max_length

    @property
    def pattern(self) -> str | None:
        return self.rule.pattern

    def _parse(self, value, name):
        if not isinstance(value, str):
            raise InvalidField(name, f"expected a string, got {_type_name(value)}")
        return _checked(self.rule, value, name)

    def _schema(self):
        out = {"type": "string", "maxLength": self.max_length}
        if self.min_length:
            out["minLength"] = self.min_length
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        return out


def _checked(rule, value, name):
    """`rule.check`, its refusal as an InvalidField of `name`."""
    try:
        return rule.check(value, name)
    except InvalidField:
        raise
    except InvalidInput as e:
        raise InvalidField(name, e.message.split(": ", 1)[-1] if name else e.message) from None


class Secret(String):
    """A password or PIN: parsed like a string but never echoed back in an error message."""

    def _schema(self):
        out = super()._schema()
        out["writeOnly"] = True
        return out


class Email(String):
    def __init__(self, **kw):
        super().__init__(rule=R.EMAIL, **kw)

    def _schema(self):
        out = super()._schema()
        out.pop("pattern", None)
        out["anyOf"] = [{"const": ""}, {"format": "email"}]
        return out


class Pattern(String):
    """A case-insensitive regular expression (document name filters)."""

    def __init__(self, **kw):
        super().__init__(rule=R.DOCUMENT_PATTERN, **kw)

    def _schema(self):
        return {**super()._schema(), "format": "regex"}


class Integer(Field):
    """A whole number (never a boolean or a number with a fraction), within a rule's range
    (`rule=`, a `pcnet.domain.rules.Count`) or `minimum`..`maximum`."""

    def __init__(self, *, rule: R.Count | None = None, minimum: int = 0, maximum: int = _MAX_ID,
                 **kw):
        super().__init__(**kw)
        self.minimum = rule.minimum if rule is not None else minimum
        self.maximum = rule.maximum if rule is not None else maximum

    def _parse(self, value, name):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidField(name, f"expected an integer, got {_type_name(value)}")
        if value < self.minimum or value > self.maximum:
            raise InvalidField(name, f"{value} is out of range ({self.minimum} to {self.maximum})")
        return value

    def from_text(self, text, name):
        if not re.fullmatch(r"-?[0-9]{1,20}", text):
            raise InvalidField(name, f"expected an integer, got {text[:40]!r}")
        return self.parse(int(text), name)

    def _schema(self):
        return {"type": "integer", "minimum": self.minimum, "maximum": self.maximum}


class Id(Integer):
    def __init__(self, **kw):
        super().__init__(minimum=1, maximum=_MAX_ID, **kw)


class Boolean(Field):
    _TEXT = {"true": True, "false": False, "1": True, "0": False}

    def _parse(self, value, name):
        if not isinstance(value, bool):
            raise InvalidField(name, f"expected true or false, got {_type_name(value)}")
        return value

    def from_text(self, text, name):
        try:
            return self._TEXT[text.lower()]
        except KeyError:
            raise InvalidField(name, f"expected true or false, got {text[:40]!r}") from None

    def _schema(self):
        return {"type": "boolean"}


class Money(Field):
    """An amount as a string ("1.50") or an integer; never a float. At most 4 decimal places
    (the storage precision) so that nothing is silently rounded; within a rule's range
    (`rule=`, a `pcnet.domain.rules.Amount`) or `minimum`..`maximum`."""

    def __init__(self, *, rule: R.Amount | None = None, minimum: Decimal | None = -MAX_MONEY,
                 maximum: Decimal | None = MAX_MONEY, nonzero: bool = False, **kw):
        super().__init__(**kw)
        self.rule = rule or R.Amount(minimum=minimum, maximum=maximum, nonzero=nonzero)

    @property
    def minimum(self):
        return self.rule.minimum

    @property
    def maximum(self):
        return self.rule.maximum

    def _parse(self, value, name):
        if isinstance(value, (list, dict)):
            raise InvalidField(name, f"expected an amount such as \"1.50\", got {_type_name(value)}")
        try:
            if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 12:
                # parse_money checks the range of strings only; a huge int overflows quantize.
                raise InvalidField(name, f"{value} is out of range")
            amount = parse_money(value, name)
        except InvalidField:
            raise
        except InvalidInput as e:
            raise InvalidField(name, e.message.split(": ", 1)[-1]) from None
        except ArithmeticError:
            raise InvalidField(name, "is not an amount the ledger can hold") from None
        return _checked(self.rule, amount, name)

    def _schema(self):
        lo = "-?" if self.minimum is None or self.minimum < 0 else ""
        # An integer is accepted too; the pattern constrains the string form only.
        digits = MONEY_PATTERN.removeprefix("-?")
        return {"type": ["string", "integer"], "pattern": f"^{lo}{digits}$",
                "description": "an amount with up to 4 decimal places, as a string"}

    def schema(self):
        out = super().schema()
        if "description" in out and self.description:
            out["description"] = f"{self.description} (an amount as a string, up to 4 decimal places)"
        return out


class Choice(Field):
    """One value of an enum (by its `.value`)."""

    def __init__(self, enum_type: type[enum.Enum], **kw):
        super().__init__(**kw)
        self.enum_type = enum_type

    def _parse(self, value, name):
        for member in self.enum_type:
            if member.value == value:
                return member
        allowed = ", ".join(m.value for m in self.enum_type)
        shown = repr(value)[:40] if isinstance(value, str) else _type_name(value)
        raise InvalidField(name, f"{shown} is not one of {allowed}")

    def _schema(self):
        return {"type": "string", "enum": [m.value for m in self.enum_type]}


class Uuid(String):
    def __init__(self, **kw):
        super().__init__(max_length=36, pattern_hint="expected a UUID", **kw)

    def _parse(self, value, name):
        value = super()._parse(value, name)
        try:
            return str(uuidlib.UUID(value))
        except ValueError:
            raise InvalidField(name, f"{value!r} is not a UUID") from None

    def _schema(self):
        return {"type": "string", "format": "uuid"}


class JobRef(Field):
    """A job: its uuid (how pcnet names a job everywhere: pcnet/1, imports, the ledger's
    references), or the integer `id` of its job log row, which is accepted too."""

    def _parse(self, value, name):
        if isinstance(value, int) and not isinstance(value, bool):
            return Id().parse(value, name)
        return Uuid().parse(value, name)

    def from_text(self, text, name):
        if text.isascii() and text.isdigit():
            return Id().from_text(text, name)
        return Uuid().from_text(text, name)

    def text_schema(self):
        out = {"type": "string", "minLength": 1, "maxLength": 36,
               "examples": ["6f1c2a4e-0b7d-4c1e-9a53-2f8d4b1e7c90", "42"]}
        if self.description:
            out["description"] = self.description
        return out

    def _schema(self):
        return {"oneOf": [{"type": "string", "format": "uuid", "description": "the job's uuid"},
                          {"type": "integer", "minimum": 1,
                           "description": "the id of the job's row in the job log"}]}


class Timestamp(Field):
    """An ISO-8601 time with a zone (`2025-01-31T08:00:00Z`), or a date (midnight UTC)."""

    def _parse(self, value, name):
        if not isinstance(value, str) or len(value) > 40:
            raise InvalidField(name, f"expected a time such as 2025-01-31T08:00:00Z, got {_type_name(value)}")
        try:
            if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", value):
                return datetime.combine(datetime.fromisoformat(value).date(), time(0), tzinfo=timezone.utc)
            moment = datetime.fromisoformat(value)
        except ValueError:
            raise InvalidField(name, f"{value!r} is not a time such as 2025-01-31T08:00:00Z") from None
        if moment.tzinfo is None:
            raise InvalidField(name, f"{value!r} has no time zone; add Z for UTC")
        try:
            # Near year 1 or 9999 an offset can push the UTC time out of datetime's range.
            return moment.astimezone(timezone.utc)
        except OverflowError:
            raise InvalidField(name, f"{value!r} is out of range once converted to UTC "
                                     f"(times must lie within the years 1 to 9999 UTC)") from None

    def _schema(self):
        return {"type": "string", "format": "date-time"}


class Ref(Field):
    """A reference to a user, group, account or printer: an integer id or a name.

    In JSON an integer is an id and a string is a name. In a URL (path segment or query value)
    all digits is an id, anything else a name; a name made only of digits is written with a
    `name:` prefix (`/users/name:20231234`).
    """

    PREFIX = "name:"

    def __init__(self, what: str, *, name_field: String | None = None, **kw):
        super().__init__(**kw)
        self.what = what
        self.name_field = name_field or String(min_length=1, max_length=255, strip_check=False)

    def _parse(self, value, name):
        if isinstance(value, bool):
            raise InvalidField(name, f"expected a {self.what} id or name, got a boolean")
        if isinstance(value, int):
            return Id().parse(value, name)
        if isinstance(value, str):
            return RefValue(name=self.name_field.parse(value, name))
        raise InvalidField(name, f"expected a {self.what} id or name, got {_type_name(value)}")

    def from_text(self, text, name):
        if text.startswith(self.PREFIX):
            return RefValue(name=self.name_field.parse(text[len(self.PREFIX):], name))
        if text.isascii() and text.isdigit():
            return Id().from_text(text, name)
        return RefValue(name=self.name_field.parse(text, name))

    def text_schema(self):
        out = {"type": "string", "minLength": 1, "examples": ["42", "ann", "name:20231234"]}
        if self.description:
            out["description"] = self.description
        return out

    def _schema(self):
        return {"oneOf": [{"type": "integer", "minimum": 1, "description": f"the {self.what}'s id"},
                          {"type": "string", "minLength": 1, "maxLength": 255,
                           "description": f"the {self.what}'s name"}]}


@dataclass(frozen=True)
class RefValue:
    """A reference by name (an `int` is a reference by id)."""

    name: str


class ListOf(Field):
    def __init__(self, item: Field, *, max_items: int = 100, unique: bool = False, **kw):
        super().__init__(**kw)
        self.item = item
        self.max_items = max_items
        self.unique = unique

    def _parse(self, value, name):
        if not isinstance(value, list):
            raise InvalidField(name, f"expected an array, got {_type_name(value)}")
        if len(value) > self.max_items:
            raise InvalidField(name, f"has {len(value)} items; at most {self.max_items} are allowed")
        out = [self.item.parse(v, _join(name, i)) for i, v in enumerate(value)]
        if self.unique:
            seen = set()
            for i, v in enumerate(out):
                if v in seen:
                    raise InvalidField(_join(name, i), f"{v!r} is listed twice")
                seen.add(v)
        return tuple(out)

    def _schema(self):
        out = {"type": "array", "items": self.item.schema(), "maxItems": self.max_items}
        if self.unique:
            out["uniqueItems"] = True
        return out


class MapOf(Field):
    """A JSON object with free keys (e.g. paper size names) and one value spec."""

    def __init__(self, key: String, value: Field, *, max_items: int = 50, **kw):
        super().__init__(**kw)
        self.key = key
        self.value = value
        self.max_items = max_items

    def _parse(self, value, name):
        if not isinstance(value, dict):
            raise InvalidField(name, f"expected an object, got {_type_name(value)}")
        if len(value) > self.max_items:
            raise InvalidField(name, f"has {len(value)} entries; at most {self.max_items} are allowed")
        out = {}
        for k, v in value.items():
            key = self.key.parse(k, _join(name, k))
            out[key] = self.value.parse(v, _join(name, k))
        return out

    def _schema(self):
        return {"type": "object", "additionalProperties": self.value.schema(),
                "maxProperties": self.max_items,
                "propertyNames": {k: v for k, v in self.key.schema().items() if k != "description"}}


class Object(Field):
    """A JSON object with known fields. Unknown fields are refused, naming them."""

    def __init__(self, fields: dict[str, Field], *, schema_name: str | None = None,
                 min_fields: int = 0, **kw):
        super().__init__(**kw)
        self.fields = fields
        self.schema_name = schema_name
        self.min_fields = min_fields

    def _parse(self, value, name):
        if not isinstance(value, dict):
            raise InvalidField(name, f"expected a JSON object, got {_type_name(value)}")
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            known = ", ".join(self.fields)
            raise InvalidField(_join(name, unknown[0]), f"unknown field (known fields: {known})")
        out = {}
        for key, spec in self.fields.items():
            path = _join(name, key)
            if key in value:
                out[key] = spec.parse(value[key], path)
            elif spec.required:
                raise InvalidField(path, "required")
            elif spec.default is not MISSING:
                out[key] = spec.default
        if len(value) < self.min_fields:
            raise InvalidField(name, f"give at least one of: {', '.join(self.fields)}")
        return out

    def _schema(self):
        out = {"type": "object",
               "properties": {k: f.schema() for k, f in self.fields.items()},
               "additionalProperties": False}
        required = [k for k, f in self.fields.items() if f.required]
        if required:
            out["required"] = required
        if self.min_fields:
            out["minProperties"] = self.min_fields
        return out


# --- JSON and query strings ----------------------------------------------------------------

class _StrictDecoder:
    """json.loads hooks that refuse what JSON parsers disagree about."""

    @staticmethod
    def pairs(pairs):
        out = {}
        for k, v in pairs:
            if k in out:
                raise InvalidField(_field_hint(k), "given twice in the same object")
            out[k] = v
        return out

    @staticmethod
    def constant(name):
        raise InvalidField("body", f"{name} is not valid JSON")


def _field_hint(key: str) -> str:
    return key if len(key) <= 60 else key[:60] + "..."


def parse_json(data: bytes, name: str = "body"):
    """Bytes of a request body -> JSON value, refusing anything ambiguous."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InvalidField(name, f"is not UTF-8 (byte {e.start})") from None
    try:
        return json.loads(text, object_pairs_hook=_StrictDecoder.pairs,
                          parse_constant=_StrictDecoder.constant)
    except InvalidField:
        raise
    except json.JSONDecodeError as e:
        raise InvalidField(name, f"malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise InvalidField(name, "JSON nested too deeply") from None
    except ValueError as e:  # e.g. an integer with thousands of digits
        raise InvalidField(name, f"malformed JSON: {str(e)[:100]}") from None


def parse_query(args: dict[bytes, list[bytes]], fields: dict[str, Field]) -> dict:
    """A request's query arguments -> dict, by field specs. Unknown or repeated parameters are
    refused; absent ones get their default (or are left out)."""
    decoded: dict[str, str] = {}
    for raw_key, values in args.items():
        try:
            key = raw_key.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidField("query", "a parameter name is not UTF-8") from None
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise InvalidField(key[:60], f"unknown query parameter (known: {known})")
        if len(values) != 1:
            raise InvalidField(key, "given more than once")
        try:
            decoded[key] = values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidField(key, "is not UTF-8") from None
    out = {}
    for key, spec in fields.items():
        if key in decoded:
            out[key] = spec.from_text(decoded[key], key)
        elif spec.required:
            raise InvalidField(key, "required")
        elif spec.default is not MISSING:
            out[key] = spec.default
    return out
