"""Reads the template files: one ``<language>.toml`` per language in a directory, parsed
and handed to the domain's :class:`TemplateCatalog`; errors name the file."""

from __future__ import annotations

import tomllib
from pathlib import Path

from services.notifier.domain.templates import TemplateCatalog, TemplateError, validate_language

__all__ = ["load_catalog"]


def load_catalog(directory: Path) -> TemplateCatalog:
    """The catalog of every ``*.toml`` in ``directory``; ``en.toml`` is required."""
    files = sorted(directory.glob("*.toml"))
    if not files:
        raise TemplateError(f"{directory}: no template files (*.toml)")
    languages: dict[str, dict[str, dict[str, str]]] = {}
    for path in files:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TemplateError(f"{path.name}: not valid TOML: {exc}") from None
        try:
            languages[path.stem] = validate_language(data)
        except TemplateError as exc:
            raise TemplateError(f"{path.name}: {exc}") from None
    try:
        return TemplateCatalog(languages)
    except TemplateError as exc:
        raise TemplateError(f"{directory}: {exc} (en.toml)") from None
