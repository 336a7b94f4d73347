"""Results in plain words, in the reader's language:
"12 new posts, 3 new members, 1 bundle set aside because it was damaged"."""

from __future__ import annotations

from collections.abc import Callable

from p2p.news import News

N = Callable[[str, str, int], str]


def N_(text: str) -> str:
    """Marks a word for the catalogue that templates translate from data."""
    return text


# roles and job states arrive as data; templates show them through _()
DATA_WORDS = [
    N_("owner"),
    N_("moderator"),
    N_("member"),
    N_("banned"),
    N_("running"),
    N_("done"),
    N_("failed"),
    N_("lan"),
    N_("bundle"),
]


def news(n: News, ngettext: N) -> list[str]:
    parts = [
        ngettext("%(num)d new post", "%(num)d new posts", n.posts) % {"num": n.posts},
        ngettext("%(num)d new member", "%(num)d new members", n.members) % {"num": n.members},
    ]
    if n.chat_messages:
        parts.append(
            ngettext("%(num)d new chat message", "%(num)d new chat messages", n.chat_messages)
            % {"num": n.chat_messages}
        )
    if n.direct_messages:
        parts.append(
            ngettext(
                "%(num)d direct message for you",
                "%(num)d direct messages for you",
                n.direct_messages,
            )
            % {"num": n.direct_messages}
        )
    return parts


def rejected(count: int, ngettext: N) -> str:
    return ngettext(
        "%(num)d change was refused (forged or not allowed) and left out",
        "%(num)d changes were refused (forged or not allowed) and left out",
        count,
    ) % {"num": count}


def damaged(count: int, ngettext: N) -> str:
    return ngettext(
        "%(num)d bundle set aside because it was damaged",
        "%(num)d bundles set aside because they were damaged",
        count,
    ) % {"num": count}


def add(total: News, more: News) -> News:
    return News(
        total.posts + more.posts,
        total.chat_messages + more.chat_messages,
        total.direct_messages + more.direct_messages,
        total.members + more.members,
    )
