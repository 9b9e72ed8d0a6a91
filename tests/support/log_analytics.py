"""The data collection rule of infra/main.json, loaded into the emulator's endpoint, so the
streams and columns the emulator accepts are exactly the ones the deployment declares."""

from __future__ import annotations

import json

from tests.support.paths import ROOT

MAIN = ROOT / "infra" / "main.json"


def app_template() -> dict:
    main = json.loads(MAIN.read_text())
    app = next(r for r in main["resources"] if r["type"] == "Microsoft.Resources/deployments"
               and r["name"] == "[variables('appDeployment')]")
    return app["properties"]["template"]


def resolve(template: dict, value):
    """`[variables('x')]` -> the variable's value (the only expression these parts use)."""
    if isinstance(value, str) and value.startswith("[variables('") and value.endswith("')]"):
        return template["variables"][value[len("[variables('"):-len("')]")]]
    return value


def template_dcr() -> dict:
    """The DCR resource with its stream declarations' columns resolved."""
    tpl = app_template()
    dcr = next(r for r in tpl["resources"]
               if r["type"] == "Microsoft.Insights/dataCollectionRules")
    streams = {name: {"columns": resolve(tpl, decl["columns"])}
               for name, decl in dcr["properties"]["streamDeclarations"].items()}
    return {**dcr, "streams": streams}


def template_table_columns() -> list[dict]:
    tpl = app_template()
    table = next(r for r in tpl["resources"]
                 if r["type"] == "Microsoft.OperationalInsights/workspaces/tables")
    return resolve(tpl, table["properties"]["schema"]["columns"])


DCR_ID = ("/subscriptions/00000000-0000-0000-0000-000000000001/resourceGroups/rg-hairpin/"
          "providers/Microsoft.Insights/dataCollectionRules/hairpin-dcr")


def add_template_rule(emu, dcr_id: str = DCR_ID) -> str:
    """Load the template's DCR into the emulator's endpoint; returns its immutable ID."""
    return emu.logs.add_rule(dcr_id, template_dcr()["streams"])
