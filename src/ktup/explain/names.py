"""Readable names for KG relation tokens.

Freebase relations read ``domain.type.property``. When the type is the domain itself
(``film.film.directed_by``) the property names the film's attribute; otherwise the type names
the entity at the other end (``film.director.film`` links a *director* to a film). Both
directions of one fact therefore read the same ("director"), which is what a person wants to
see in "recommended for its director". Other tokens (``r3``, ``has_genre``) are spelled out by
replacing separators with spaces.
"""

from __future__ import annotations

import re

# Freebase properties whose spelled-out form reads badly in "recommended for its ___".
_PROPERTY_WORDS = {
    "directed_by": "director",
    "written_by": "writer",
    "produced_by": "producer",
    "music": "composer",
    "cinematography": "cinematographer",
    "production_companies": "production company",
    "subjects": "subject",
    "films_in_this_genre": "genre",
    "award_nomination": "award nomination",
    "award_won": "award",
    "starring": "cast",
    "actor": "actor",
}


def _words(token: str) -> str:
    return re.sub(r"[_\s]+", " ", token).strip()


def relation_name(token: str) -> str:
    """Readable name of a relation token, e.g. ``film.film.directed_by`` → ``director``.

    >>> relation_name("film.director.film")
    'director'
    >>> relation_name("film.film_genre.films_in_this_genre")
    'genre'
    >>> relation_name("has_genre")
    'has genre'
    """
    token = str(token).strip()
    parts = [p for p in token.lstrip("/").replace("/", ".").split(".") if p]
    if len(parts) >= 3:
        domain, typ, prop = parts[0], parts[-2], parts[-1]
        if typ == domain:
            return _PROPERTY_WORDS.get(prop, _words(prop))
        # The type names the far end; drop the domain prefix ("film_genre" → "genre").
        if typ.startswith(domain + "_"):
            typ = typ[len(domain) + 1:]
        return _PROPERTY_WORDS.get(typ, _words(typ))
    if len(parts) == 2:
        return _PROPERTY_WORDS.get(parts[1], _words(parts[1]))
    return _words(token) or token
