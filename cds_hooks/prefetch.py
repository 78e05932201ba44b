"""Prefetch templates: replace CDS Hooks prefetch tokens with values from the request.

Supported tokens (CDS Hooks 2.0):
- `{{context.X}}` for any root-level primitive context field X (a list of primitives renders comma-joined,
  the FHIR search "OR" form);
- `{{userPractitionerId}}`, `{{userPractitionerRoleId}}`, `{{userPatientId}}`, `{{userRelatedPersonId}}`,
  derived from `context.userId` ("Practitioner/123" -> "123" when the resource type matches).

Values are percent-encoded: in the query part of a template (after the first `?`) fully, apart from `/` and
`:`; in the path part apart from `/`.  A token that cannot be filled (missing, null, empty, an object, a user
token of another type) raises `TemplateError`; it is never rendered as an empty string, because a search
such as `Condition?patient=` would ask the server for every patient's data.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cds_hooks.hooks import USER_ID_TOKENS

if TYPE_CHECKING:
    from cds_hooks.models import HookRequest

__all__ = ["TemplateError", "render_template", "template_tokens"]

_TOKEN_RE = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")


class TemplateError(ValueError):
    """A prefetch token could not be filled from the request."""

    def __init__(self, token: str, reason: str) -> None:
        super().__init__(f"prefetch token {{{{{token}}}}}: {reason}")
        self.token = token
        self.reason = reason


def template_tokens(template: str) -> list[str]:
    """Names of the tokens in a template, in order (e.g. ["context.patientId"])."""
    return [m.group(1) for m in _TOKEN_RE.finditer(template)]


def _primitive(token: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, str):
        if not value.strip():
            raise TemplateError(token, "value is empty")
        return value
    if value is None:
        raise TemplateError(token, "value is null")
    raise TemplateError(token, f"a {type(value).__name__} cannot go into a URL")


def _encode_path(token: str, value: str) -> str:
    if any(seg in (".", "..") for seg in value.split("/")):
        raise TemplateError(token, "value contains a relative path segment")
    return quote(value, safe="/")


def _encode_query(value: str) -> str:
    # FHIR search escaping for the separator we introduce, then percent-encoding
    value = value.replace("\\", "\\\\").replace(",", "\\,")
    return quote(value, safe="/:")


def _value_of(token: str, request: HookRequest) -> list[str]:
    if token.startswith("context."):
        name = token[len("context.") :]
        if not name or "." in name:
            raise TemplateError(token, "only root-level context fields can be tokens")
        if name not in request.context:
            raise TemplateError(token, "not in the request context")
        value = request.context[name]
        if isinstance(value, list | tuple):
            if not value:
                raise TemplateError(token, "value is an empty list")
            return [_primitive(token, v) for v in value]
        return [_primitive(token, value)]
    if token in USER_ID_TOKENS:
        value = request.user_token(token)
        if value is None:
            raise TemplateError(token, f"context.userId is not a {USER_ID_TOKENS[token]} reference")
        return [value]
    raise TemplateError(token, "unknown prefetch token")


def render_template(template: str, request: HookRequest) -> str:
    """Fill every prefetch token of `template` from `request`; raises TemplateError."""
    query_start = template.find("?")
    out: list[str] = []
    last = 0
    for m in _TOKEN_RE.finditer(template):
        token = m.group(1)
        values = _value_of(token, request)
        in_query = 0 <= query_start < m.start()
        if in_query:
            rendered = ",".join(_encode_query(v) for v in values)
        else:
            rendered = ",".join(_encode_path(token, v) for v in values)
        out.append(template[last : m.start()])
        out.append(rendered)
        last = m.end()
    out.append(template[last:])
    return "".join(out)

