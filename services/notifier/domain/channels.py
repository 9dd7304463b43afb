"""Customer channels as the notifier sees them: one table, read by the core (which
template style a message is worded in) and the adapters (which gateway endpoint
delivers it, and the channel label on metrics).

Numbers are those of ``switchboard.v1.Channel``. SOCIAL has its own gateway endpoint
but is worded like chat. A number not in the table is treated as SMS.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CHANNELS", "ChannelInfo", "channel_info"]


@dataclass(frozen=True, slots=True)
class ChannelInfo:
    #: Names the gateway endpoint (``[gateways] <name>``) and labels metrics.
    name: str
    #: The template style the message is worded in (``sms``, ``email``, ``chat``, ``voice``).
    style: str


CHANNELS: dict[int, ChannelInfo] = {
    1: ChannelInfo("voice", "voice"),
    2: ChannelInfo("chat", "chat"),
    3: ChannelInfo("email", "email"),
    4: ChannelInfo("sms", "sms"),
    5: ChannelInfo("social", "chat"),
}
_UNKNOWN = ChannelInfo("sms", "sms")


def channel_info(channel: int) -> ChannelInfo:
    """The channel's row; SMS for a number not in :data:`CHANNELS`."""
    return CHANNELS.get(channel, _UNKNOWN)
