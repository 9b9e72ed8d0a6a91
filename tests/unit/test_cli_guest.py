"""`hairpin guest-script`: operators read the exact script before anything runs."""

import pytest

from shared.cli.main import main

BASE = ["guest-script", "--primary-ip", "10.0.1.10", "--secondary-ip", "10.0.1.11",
        "--gateway", "10.0.1.1", "--mac", "00-0D-3A-12-34-56"]


def run(capsys, *args):
    code = main([*BASE, *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_linux_script_has_one_narrow_rule_per_backend_port(capsys):
    code, out, _ = run(capsys, "--os", "linux", "--vip", "10.0.1.100", "--port", "1972",
                       "--vip", "10.0.1.101", "--port", "1972:1973")
    assert code == 0
    assert out.startswith("#!/bin/bash")
    assert "WANT_VIPS='10.0.1.100 10.0.1.101'" in out
    # The reply leaves with the backend port as source port: rules match backend ports.
    assert "WANT_RULES='tcp|6|ipproto-6/1972 tcp|6|ipproto-6/1973'" in out
    assert "SECONDARY_MAC=00:0d:3a:12:34:56" in out  # ARM's MAC form normalised for Linux


def test_windows_script_routes_by_mac(capsys):
    code, out, _ = run(capsys, "--os", "windows", "--vip", "10.0.1.100", "--port", "1972")
    assert code == 0
    assert "New-NetRoute" in out and "00-0D-3A-12-34-56" in out


@pytest.mark.parametrize("mode,marker", [("--cleanup", "cleanup"), ("--verify", "verification")])
def test_cleanup_and_verify_modes(capsys, mode, marker):
    code, out, _ = run(capsys, "--os", "linux", "--vip", "10.0.1.100", "--port", "1972", mode)
    assert code == 0
    assert marker in out.splitlines()[1]


@pytest.mark.parametrize("args,message", [
    (["--mac", "x;rm -rf /"], "not a MAC address"),
    (["--vip", "10.0.1.101"], "give one --port after each --vip"),
    (["--gateway", "10.9.9.1"], "is not in"),
])
def test_bad_input_is_one_line_and_exit_2(capsys, args, message):
    code, out, err = run(capsys, "--os", "linux", "--vip", "10.0.1.100", "--port", "1972", *args)
    assert code == 2
    assert out == ""
    assert message in err and len(err.strip().splitlines()) == 1
