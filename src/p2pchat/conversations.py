"""Which conversation a line belongs to: the group, or a direct chat with one person.

A conversation is keyed by its type, never by a string: a participant may
well be called ``group``, and their direct chat must not land in the group's
tab, unread count or log.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .protocol import nick_key


@dataclass(frozen=True, slots=True)
class Group:
    """The conversation everyone is in."""

    title = "group"


@dataclass(frozen=True, slots=True)
class Direct:
    """A direct chat; two are the same when their nicknames compare equal
    (docs/PROTOCOL.md decision 5)."""

    nick: str = field(compare=False)
    key: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", nick_key(self.nick))

    @property
    def title(self) -> str:
        return self.nick


Conversation = Group | Direct

GROUP = Group()
