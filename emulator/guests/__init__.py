"""Guest models: what happens inside a VM when it boots, stops or runs a command.

`GuestModel` is the plug the emulator calls; `RecordingGuest` (default) records and answers
with configured output; `modelled` models route tables from the project's scripts; `netns`
runs Linux guests in network namespaces (`fabric`).
"""

from emulator.guests.recording import GuestModel, RecordingGuest

__all__ = ["GuestModel", "RecordingGuest"]
