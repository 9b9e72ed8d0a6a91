"""The guest script's result read out of Linux Run Command output as the current extension
reports it (Azure/run-command-extension-linux main/cmds.go `enable` and main/main.go
`statusMsg`): always "Enable succeeded: \\n[stdout]\\n<tail>\\n[stderr]\\n<tail>", tails of at
most 4,096 bytes, and no exit status. The script's own last JSON line on stdout is the result."""

from __future__ import annotations

import json

import pytest

from shared.core.guest import RunCommandOutputError, parse_run_command_output

TAIL = 4 * 1024  # maxTailLen


def linux_value(stdout: str, stderr: str = "") -> list[dict]:
    """value[] of the RunCommandResult, as the Linux extension's status reaches ARM."""
    out = stdout.encode()[-TAIL:].decode("utf-8", "ignore")
    err = stderr.encode()[-TAIL:].decode("utf-8", "ignore")
    return [{"code": "ProvisioningState/succeeded", "level": "Info",
             "displayStatus": "Provisioning succeeded",
             "message": f"Enable succeeded: \n[stdout]\n{out}\n[stderr]\n{err}"}]


def test_result_is_the_last_json_line_on_stdout():
    value = linux_value('progress\n{"step":"route"}\n{"result":"ok","changes":[]}\n')
    assert parse_run_command_output(value) == {"result": "ok", "changes": []}


def test_a_failed_script_is_known_by_its_own_line_not_by_the_status():
    # exit 3 in the guest, yet the extension says "Enable succeeded".
    value = linux_value('{"result":"error","error":"NoNic","message":"x","changes":[]}\n',
                        "hairpin: error: x\n")
    assert parse_run_command_output(value)["result"] == "error"


def test_no_result_line_is_an_error_and_stderr_is_never_the_result():
    value = linux_value("", 'script.sh: line 3: X: unbound variable\n{"result":"ok"}\n')
    with pytest.raises(RunCommandOutputError):
        parse_run_command_output(value)


def test_the_result_survives_the_4096_byte_tail():
    noise = "".join(f"line {i:05d}\n" for i in range(1000))  # ~11 KB before the result
    result = {"result": "ok", "vips": ["10.0.1.100"]}
    value = linux_value(noise + json.dumps(result) + "\n")
    assert len(value[0]["message"]) < TAIL + 64
    assert parse_run_command_output(value) == result


def test_the_message_string_alone_parses_the_same():
    (item,) = linux_value('{"result":"ok"}\n', "warning\n")
    assert parse_run_command_output(item["message"]) == {"result": "ok"}
