"""The communication hub: session topics and direct channels, persisted, ordered, replayable.

Every message lands in ``agent_communications`` with a sequence number per
channel, so readers see one order. Publishing the same ``message_id`` twice
stores it once (deduplication). Delivery is at least once: a subscriber reads
after its acknowledged offset and acknowledges what it processed; whatever it
did not acknowledge is delivered again. Replay reads a channel from any offset
or time. Large bodies are stored once by content and referenced. ``subscribe``
gives an async consumer that is woken by publishes and redelivers after a
visibility timeout.
"""

from nofx.bus.message_bus import MessageBus, SharedContext
from nofx.bus.publish import StoredMessage
from nofx.bus.subscription import Delivery, Subscription

__all__ = ["Delivery", "MessageBus", "SharedContext", "StoredMessage", "Subscription"]
