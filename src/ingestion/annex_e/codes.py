"""Standard coded concepts: is (scheme, value) a code the standard knows, and its meaning.

Inside a sequence whose content is dummied or cleaned (SR content), Code Meaning is the
one free-text element of a coded entry, and a site-specific meaning can carry a name.
A meaning is kept only for a code pydicom's concept dictionaries know (DCM, SCT, UCUM, LN,
NCIt, RadLex and the other schemes pydicom 3 ships, generated from the standard), and then
the standard's own meaning is written; any other is dummied.
"""

from __future__ import annotations

from functools import cache


@cache
def _meanings() -> dict[tuple[str, str], str]:
    # pydicom generates this table from the standard's Part 16; it has no public iterator.
    from src.ingestion.encoding.dictionary import sr_concepts

    concepts = sr_concepts()
    out: dict[tuple[str, str], str] = {}
    for scheme, names in concepts.items():
        for entries in names.values():
            for value, entry in dict(entries).items():
                out.setdefault((str(scheme), str(value)), str(entry[0]))
    return out


def standard_meaning(scheme: str, value: str) -> str | None:
    """The standard's Code Meaning for ``(scheme, value)``, or ``None`` if it is not known.

    Examples
    --------
    >>> standard_meaning("DCM", "113100")
    'Basic Application Confidentiality Profile'
    >>> standard_meaning("99LOCAL", "X1") is None
    True
    """
    return _meanings().get((scheme.strip(), value.strip()))


__all__ = ["standard_meaning"]
