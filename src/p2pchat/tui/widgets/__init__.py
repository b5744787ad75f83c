"""The widgets of the full-screen client."""

from .command_input import CommandInput
from .conversation import Conversation
from .participants import ParticipantList
from .status import StatusBar

__all__ = ["CommandInput", "Conversation", "ParticipantList", "StatusBar"]
