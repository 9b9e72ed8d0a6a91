"""Pure: reading a guest script's result (its last JSON line) out of Run Command output."""

from __future__ import annotations

import json
from collections.abc import Sequence


class RunCommandOutputError(ValueError):
    """Run Command output carries no JSON result line."""


def script_lines(script: str) -> list[str]:
    """The ``script`` list RunCommandInput takes."""
    return script.split("\n")


def _stdout_part(message: str) -> str:
    # Linux Run Command message, whatever the script's exit status (which is not reported):
    # "Enable succeeded: \n[stdout]\n...\n[stderr]\n..." (Azure/run-command-extension-linux
    # main/cmds.go). Only stdout can hold the result.
    if "[stdout]" in message:
        message = message.split("[stdout]", 1)[1]
        message = message.split("[stderr]", 1)[0]
    return message


def parse_run_command_output(output: str | Sequence[object]) -> dict:
    """The JSON object on the last JSON line of Run Command output.

    Accepts a plain stdout string, the Linux ``value[0].message`` string with its
    ``[stdout]``/``[stderr]`` sections, or the ``value`` list (dicts or SDK objects with
    ``code``/``message``; Windows puts StdOut and StdErr in separate items)."""
    if isinstance(output, str):
        texts = [_stdout_part(output)]
    else:
        texts = []
        for item in output:
            code = (item.get("code") if isinstance(item, dict) else getattr(item, "code", "")) or ""
            msg = item.get("message") if isinstance(item, dict) else getattr(item, "message", "")
            if "StdErr" in str(code):
                continue
            texts.append(_stdout_part(str(msg or "")))
    for text in reversed(texts):
        for line in reversed(text.splitlines()):
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict):
                return value
    raise RunCommandOutputError("no JSON result line in the Run Command output")
