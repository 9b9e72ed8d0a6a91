"""Where things are in the repository, for every test."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "emulator" / "scenarios"
FIXTURES = ROOT / "tests" / "fixtures"
