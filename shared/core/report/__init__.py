"""Pure: an evaluation -> the JSON report document or text (`document`), or HTML (`html`)."""

from shared.core.report.document import SCHEMA_VERSION, build_report, exit_status, to_json, to_text

__all__ = ["SCHEMA_VERSION", "build_report", "exit_status", "to_json", "to_text"]
