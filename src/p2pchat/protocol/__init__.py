"""The p2pchat wire protocol: messages, their canonical encoding and an incremental decoder.

Pure code: no sockets, no asyncio, no clock.
"""

from ._decoder import (
    DEFAULT_MAX_LINE_BYTES,
    DEFAULT_MAX_MESSAGE_BYTES,
    LENGTH_HARD_LIMIT,
    MAX_LIST_LINE_BYTES,
    NEED_DATA,
    Decoder,
    NeedData,
    Role,
    decode_datagram,
)
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    Ack,
    Action,
    Broadcast,
    Chat,
    Error,
    Init,
    ListRequest,
    Message,
    Participant,
    ParticipantList,
    Register,
    Update,
    encode_broadcast,
    encode_list,
)
from ._fields import canonical_ip, check_nick, check_secret, is_unspecified, nick_key, wire_ip

__all__ = [
    "DEFAULT_MAX_LINE_BYTES",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "LENGTH_HARD_LIMIT",
    "MAX_LIST_LINE_BYTES",
    "NEED_DATA",
    "Ack",
    "Action",
    "Broadcast",
    "Chat",
    "Decoder",
    "Error",
    "Init",
    "ListRequest",
    "LocalProtocolError",
    "Message",
    "NeedData",
    "Participant",
    "ParticipantList",
    "ProtocolError",
    "Register",
    "RemoteProtocolError",
    "Role",
    "Update",
    "canonical_ip",
    "check_nick",
    "check_secret",
    "decode_datagram",
    "encode_broadcast",
    "encode_list",
    "is_unspecified",
    "nick_key",
    "wire_ip",
]
