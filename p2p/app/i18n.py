"""English and Korean: messages are English in the code and templates, and
`locale/<lang>/LC_MESSAGES/messages.po` holds the translations, read with
Babel at start-up (no build step, so a translator's edit shows on restart).

Extract new strings with:
  pybabel extract -F p2p/app/babel.cfg -o p2p/app/locale/messages.pot p2p/app
  pybabel update -i p2p/app/locale/messages.pot -d p2p/app/locale
"""

from __future__ import annotations

import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES = Path(__file__).parent / "locale"
LANGUAGES = {"en": "English", "ko": "한국어"}
DEFAULT = "en"


@cache
def translations(lang: str) -> gettext.NullTranslations:
    po = LOCALES / lang / "LC_MESSAGES" / "messages.po"
    if lang == DEFAULT or not po.exists():
        return gettext.NullTranslations()
    with po.open("rb") as fh:
        catalog = read_po(fh, locale=lang)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


def choose(cookie: str | None, accept_language: str) -> str:
    """The cookie's choice, else the browser's first supported language."""
    if cookie in LANGUAGES:
        return cookie
    for part in accept_language.split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT
