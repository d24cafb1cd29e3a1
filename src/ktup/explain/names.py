"""Readable names: KG relations (direction kept, distinct), entities and item titles.

Relations. Freebase tokens read ``domain.type.property`` and state a fact about an entity of
``type``: ``film.film.directed_by`` (a film → its director) reads "directed by";
``film.director.film`` (a director → a film) reads "director of". The two directions of one
fact therefore get two labels, and :func:`relation_labels` guarantees that no two relations of a
dataset share a label (a clash is told apart by the type, then by the token). Other token
styles are spelled out: ``directed_by_director`` (DBpedia-style) → "directed by",
``has_genre`` → "has genre".

Entities. A Freebase mid (``m.0jwpcm``) means nothing to a person: it reads "an entity" unless
ids are asked for. DBpedia resource names read as words: ``Category:French_films`` →
"French films", ``Elizabeth_(film)`` → "Elizabeth (film)".

Titles. MovieLens moves a leading article to the end ("Birdcage, The (1996)"); it is put back
("The Birdcage (1996)").
"""

from __future__ import annotations

import re
from typing import Optional, Sequence
from urllib.parse import unquote

# Freebase properties of the domain's own type (a film → ...): a phrase read from the film.
_OWN_PROPERTY = {
    "directed_by": "directed by",
    "written_by": "written by",
    "produced_by": "produced by",
    "music": "music by",
    "cinematography": "shot by",
    "production_companies": "made by company",
    "subjects": "has subject",
    "genre": "has genre",
    "actor": "has actor",
    "starring": "has cast",
    "award_nomination": "nominated for",
    "award_won": "won award",
    "language": "in language",
    "country": "made in country",
    "rating": "rated",
    "sequel": "has sequel",
    "prequel": "has prequel",
    "edited_by": "edited by",
}
# Freebase types at the other end (a director → a film): "director of".
_TYPE_WORDS = {
    "actor": "acts in",
    "film_genre": "genre of",
    "content_rating": "rating of",
    "production_company": "company of",
    "film_subject": "subject of",
}
# DBpedia-style tokens of the ml1m-dbpedia KG (and their like).
_TOKEN_WORDS = {
    "directed_by_director": "directed by",
    "starred_by_actor": "stars",
    "composed_by_composer": "music by",
    "wrote_by_writter": "written by",
    "wrote_by_writer": "written by",
    "produced_by_producer": "produced by",
    "produced_by_prodcompany": "made by company",
    "edited_by_editor": "edited by",
    "cinematography_by_cinematographer": "shot by",
    "produced_in_country": "made in country",
    "belong_to_category": "in category",
    "related_to_wikipage": "related to page",
}


def _words(token: str) -> str:
    return re.sub(r"[_\s]+", " ", token).strip()


def _parts(token: str) -> list[str]:
    return [p for p in str(token).strip().lstrip("/").replace("/", ".").split(".") if p]


def relation_name(token: str) -> str:
    """Readable, direction-keeping name of a relation token.

    >>> relation_name("film.film.directed_by"), relation_name("film.director.film")
    ('directed by', 'director of')
    >>> relation_name("film.film.actor"), relation_name("film.actor.film")
    ('has actor', 'acts in')
    >>> relation_name("people.person.profession")
    'has profession'
    """
    token = str(token).strip()
    if token in _TOKEN_WORDS:
        return _TOKEN_WORDS[token]
    parts = _parts(token)
    if len(parts) >= 3:
        domain, typ, prop = parts[0], parts[-2], parts[-1]
        if typ == domain:
            return _OWN_PROPERTY.get(prop, "has " + _words(prop))
        if prop.startswith(domain):          # the property points back to the domain: "director → film"
            if typ in _TYPE_WORDS:
                return _TYPE_WORDS[typ]
            short = typ[len(domain) + 1:] if typ.startswith(domain + "_") else typ
            return _words(short) + " of"
        return _OWN_PROPERTY.get(prop, "has " + _words(prop))   # an attribute of the type (person → profession)
    if len(parts) == 2:
        return _OWN_PROPERTY.get(parts[1], _words(parts[1]))
    return _words(token) or token


def relation_labels(tokens: Sequence[str]) -> list[str]:
    """Names of all relations of a dataset, made distinct: a clash adds the type
    (``has genre (artist)``), and a remaining clash the token itself."""
    names = [relation_name(t) for t in tokens]
    for rnd in range(2):
        seen: dict[str, list[int]] = {}
        for j, n in enumerate(names):
            seen.setdefault(n, []).append(j)
        clashes = [js for js in seen.values() if len(js) > 1]
        if not clashes:
            break
        for js in clashes:
            for j in js:
                parts = _parts(tokens[j])
                if rnd == 0 and len(parts) >= 3:
                    names[j] = f"{names[j]} ({_words(parts[-2])})"
                else:
                    names[j] = f"{relation_name(tokens[j])} [{tokens[j]}]"
    return names


_MID = re.compile(r"^/?m[./][0-9a-z_]+$")


def is_opaque_id(token: str) -> bool:
    """A Freebase mid (``m.0jwpcm``, ``/m/0jwpcm``): an id, not a name."""
    return bool(_MID.match(str(token)))


def entity_display(token: str, name: Optional[str] = None, ids: bool = False) -> str:
    """How an entity reads: its name when known, DBpedia words, "an entity" for a Freebase mid
    (the id itself when ``ids``)."""
    if name:
        return str(name)
    token = str(token)
    if is_opaque_id(token):
        return token if ids else "an entity"
    text = unquote(token)
    if text.startswith("Category:"):
        text = text[len("Category:"):]
    return _words(text) or token


_ARTICLES = ("The", "A", "An", "Les", "La", "Le", "L'", "Il", "Das", "Die", "Der", "El", "Los", "Las", "Lo")
_FLIPPED = re.compile(r"^(?P<rest>.+?), (?P<art>" + "|".join(re.escape(a) for a in _ARTICLES) + r")(?P<tail>\s*\(.*\))?$")


def display_title(title: Optional[str]) -> Optional[str]:
    """Put a trailing article back in front: "Truth About Cats & Dogs, The (1996)" →
    "The Truth About Cats & Dogs (1996)"; other titles unchanged."""
    if not title:
        return title
    m = _FLIPPED.match(str(title).strip())
    if not m:
        return title
    art = m.group("art")
    sep = "" if art.endswith("'") else " "
    return f"{art}{sep}{m.group('rest')}{m.group('tail') or ''}"
