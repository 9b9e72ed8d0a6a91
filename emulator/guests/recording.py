"""The guest-OS plug: what happens inside a VM when it boots, stops, or runs a command.

The emulator only ever calls these three methods (see docs/architecture.md). RecordingGuest is
the default: it records what it is asked and answers with configured output.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Protocol, runtime_checkable


@runtime_checkable
class GuestModel(Protocol):
    def on_start(self, vm: dict, nics: list[dict]) -> None: ...
    def on_deallocate(self, vm: dict) -> None: ...
    def run_command(
        self, vm: dict, command_id: str, script: list[str], parameters: list[dict]
    ) -> tuple[int, str, str]: ...


Handler = Callable[[dict, str, list, list], "tuple[int, str, str]"]


class RecordingGuest:
    """Records scripts per VM and answers from configuration.

    config (the scenario's `emulator.guests.recording` section), all keys optional:
      {"exitCode": 0, "stdout": "", "stderr": "",
       "vms": {"<vm name>": {"exitCode": .., "stdout": .., "stderr": ..}},
       "responses": [{"match": "<regex searched in the script>", "vm": "<name>",
                      "exitCode": .., "stdout": .., "stderr": ..}]}
    handler: a callable(vm, command_id, script, parameters) -> (exit, stdout, stderr) that wins
    over the configuration when given.
    """

    def __init__(self, config: dict | None = None, handler: Handler | None = None):
        self.config = config or {}
        self.handler = handler
        self._lock = threading.Lock()
        self.commands: list[dict] = []  # {"vm", "commandId", "script", "parameters"}
        self.started: list[tuple[str, list[str]]] = []  # (vm name, NIC ids)
        self.deallocated: list[str] = []

    def on_start(self, vm: dict, nics: list[dict]) -> None:
        with self._lock:
            self.started.append((vm["name"], [n["id"] for n in nics]))

    def on_deallocate(self, vm: dict) -> None:
        with self._lock:
            self.deallocated.append(vm["name"])

    def run_command(self, vm, command_id, script, parameters):
        with self._lock:
            self.commands.append(
                {
                    "vm": vm["name"],
                    "commandId": command_id,
                    "script": list(script),
                    "parameters": list(parameters),
                }
            )
        if self.handler is not None:
            return self.handler(vm, command_id, script, parameters)
        text = "\n".join(script)
        answer = dict(self.config)
        answer.update(self.config.get("vms", {}).get(vm["name"], {}))
        for rule in self.config.get("responses", []):
            if rule.get("vm") not in (None, vm["name"]):
                continue
            if re.search(rule.get("match", ""), text):
                answer = rule
                break
        return (
            int(answer.get("exitCode", 0)),
            str(answer.get("stdout", "")),
            str(answer.get("stderr", "")),
        )

    def scripts_for(self, vm_name: str) -> list[list[str]]:
        return [c["script"] for c in self.commands if c["vm"].lower() == vm_name.lower()]
