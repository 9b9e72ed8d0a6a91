#!/usr/bin/env bash
# azd postdeploy hook (azure.yaml): step 3 of scripts/deploy.sh, the Event Grid subscription,
# now that azd has published the code and the host lists the functions. Reads the outputs of
# the subscription deployment 'hairpin' (infra/azd/main.bicep names its module so).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if [ -z "${AZURE_SUBSCRIPTION_ID:-}" ] && command -v azd >/dev/null 2>&1; then
  AZURE_SUBSCRIPTION_ID=$(azd env get-value AZURE_SUBSCRIPTION_ID)
fi
if [ -z "${AZURE_SUBSCRIPTION_ID:-}" ]; then
  echo "azd-postdeploy: AZURE_SUBSCRIPTION_ID is not set (run through azd, or export it)" >&2
  exit 2
fi
exec scripts/deploy.sh --events-only --subscription "$AZURE_SUBSCRIPTION_ID" \
  --deployment-name "${HAIRPIN_DEPLOYMENT_NAME:-hairpin}"
