#!/usr/bin/env bash
# One command on a fresh subscription (docs/deploy.md):
#   scripts/deploy.sh --subscription ID --location REGION [--parameters FILE] [--name-prefix P]
# Steps: (0) resource providers, the package (make package), the Entra ID app registration for
# approvals, (1) infrastructure (infra/main.json,
# subscription scope), (2) the package published with
# `az functionapp deployment source config-zip`, waiting until the functions are listed,
# (3) the Event Grid subscription (infra/eventgrid.json), only now that the function exists, with
# bounded retries while Event Grid's endpoint validation fails, (4) what was deployed.
# --events-only runs step 3 alone from the outputs of an earlier deployment (azd's postdeploy
# hook, or a retry after step 3 failed).
# Exit codes: 0 done, 2 usage or prerequisites, 3 infrastructure, 4 publish, 5 functions not
# listed in time, 6 event subscription (the rest is deployed; see docs/deploy.md).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly EXPECTED_FUNCTIONS=10
readonly EVENT_FUNCTION=on_resource_event

SUBSCRIPTION=""
LOCATION=""
PARAMETERS="$ROOT/infra/parameters.prod.json"
NAME_PREFIX=""
PACKAGE=""
AUTH_CLIENT_ID=""
NO_AUTH=0
SKIP_EVENTS=0
EVENTS_ONLY=0
DEPLOYMENT_NAME="hairpin"
RETRIES=${HAIRPIN_DEPLOY_RETRIES:-6}          # attempts for each retried step
RETRY_SECONDS=${HAIRPIN_DEPLOY_RETRY_SECONDS:-20}
WAIT_TRIES=${HAIRPIN_DEPLOY_WAIT_TRIES:-30}   # function listing polls (x RETRY_SECONDS)

usage() {
  cat <<'EOF'
usage: scripts/deploy.sh --subscription ID --location REGION [options]

  --subscription ID      subscription to deploy into (az account set)
  --location REGION      region offering Flex Consumption (az functionapp list-flexconsumption-locations)
  --parameters FILE      parameter file for infra/main.json (default infra/parameters.prod.json)
  --name-prefix PREFIX   namePrefix override (3-12 lowercase letters, digits, '-')
  --package ZIP          a package built before (default: build it with scripts/package.py)
  --auth-client-id ID    an existing app registration defining the Hairpin.Approver app role
  --no-auth              no App Service Authentication: no approval can then be verified
  --skip-events          stop after publishing (create the event subscription later)
  --events-only          only step 3, from the outputs of deployment --deployment-name
  --deployment-name NAME ARM deployment name (default hairpin)
  -h, --help             this text
EOF
}

die() {  # die CODE MESSAGE...
  local code=$1
  shift
  printf 'deploy: error: %s\n' "$*" >&2
  exit "$code"
}
step() { printf '\n==> %s\n' "$*"; }
note() { printf '    %s\n' "$*"; }

need() {  # need OPTION ARGS...: OPTION must be followed by a value
  if [ $# -lt 2 ] || [ -z "$2" ] || [ "${2#--}" != "$2" ]; then
    usage >&2
    die 2 "$1 needs a value"
  fi
}
while [ $# -gt 0 ]; do
  case "$1" in
    --subscription) need "$@"; SUBSCRIPTION=$2; shift 2 ;;
    --location) need "$@"; LOCATION=$2; shift 2 ;;
    --parameters) need "$@"; PARAMETERS=$2; shift 2 ;;
    --name-prefix) need "$@"; NAME_PREFIX=$2; shift 2 ;;
    --package) need "$@"; PACKAGE=$2; shift 2 ;;
    --auth-client-id) need "$@"; AUTH_CLIENT_ID=$2; shift 2 ;;
    --no-auth) NO_AUTH=1; shift ;;
    --skip-events) SKIP_EVENTS=1; shift ;;
    --events-only) EVENTS_ONLY=1; shift ;;
    --deployment-name) need "$@"; DEPLOYMENT_NAME=$2; shift 2 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die 2 "unknown argument: $1" ;;
  esac
done

[ -n "$SUBSCRIPTION" ] || { usage >&2; die 2 "--subscription is required"; }
[ -n "$LOCATION" ] || [ "$EVENTS_ONLY" = 1 ] || { usage >&2; die 2 "--location is required"; }
[ -f "$PARAMETERS" ] || die 2 "parameter file not found: $PARAMETERS"
if [ -n "$NAME_PREFIX" ] && ! [[ "$NAME_PREFIX" =~ ^[a-z0-9-]{3,12}$ ]]; then
  die 2 "--name-prefix must be 3-12 lowercase letters, digits or '-': $NAME_PREFIX"
fi
if [ "$NO_AUTH" = 1 ] && [ -n "$AUTH_CLIENT_ID" ]; then
  die 2 "--no-auth and --auth-client-id exclude each other"
fi
command -v az >/dev/null 2>&1 || die 2 "the Azure CLI (az) is not on PATH: https://aka.ms/installazurecli"
command -v python3 >/dev/null 2>&1 || die 2 "python3 is needed (to build the package and read outputs)"

# json_get JSON KEY: the value of outputs.KEY.value in an ARM outputs object
json_get() {
  python3 -c 'import json, sys
out = json.loads(sys.argv[1]).get(sys.argv[2])
if out is None:
    sys.exit("deployment output %s is missing" % sys.argv[2])
v = out.get("value", out) if isinstance(out, dict) else out
print(str(v).lower() if isinstance(v, bool) else v)' "$1" "$2"
}

# What is worth retrying, per step. Publish: a fresh role assignment of the app's identity on
# its deployment container still propagating (403 / BlobUploadFailed), throttling, a deployment
# already running. Events: Event Grid's validation of the AzureFunction endpoint before the host
# has indexed the function and created its system key ("Url validation", "Endpoint validation",
# "Destination endpoint not found"; Azure/Azure-Functions#1004, Azure/azure-cli#11176).
readonly COMMON_TRANSIENT='429|TooManyRequests|ServiceUnavailable|timed out|temporarily unavailable'
readonly PUBLISH_TRANSIENT="403|Forbidden|BlobUploadFailed|AuthorizationPermissionMismatch|Conflict|$COMMON_TRANSIENT"
readonly EVENTS_TRANSIENT="Url validation|Endpoint validation|attempt to validate the provided endpoint|Destination endpoint not found|pre-exist|handshake|$COMMON_TRANSIENT"
# Resource providers the deployment and these commands use (a fresh subscription has few
# registered; Microsoft.App backs the Flex Consumption VNet integration's subnet delegation).
readonly PROVIDERS="Microsoft.Web Microsoft.Storage Microsoft.Network Microsoft.App Microsoft.EventGrid Microsoft.Insights Microsoft.OperationalInsights Microsoft.ManagedIdentity"

ERR_FILE=$(mktemp)
trap 'rm -f "$ERR_FILE"' EXIT

# retry LABEL PATTERN CMD...: run CMD up to RETRIES times while its error matches PATTERN
retry() {
  local label=$1 pattern=$2 attempt=1 out
  shift 2
  while :; do
    if out=$("$@" 2>"$ERR_FILE"); then
      printf '%s' "$out"
      return 0
    fi
    if ! grep -qiE "$pattern" "$ERR_FILE" || [ "$attempt" -ge "$RETRIES" ]; then
      [ "$attempt" -gt 1 ] && note "$label: giving up after $attempt attempts" >&2
      return 1
    fi
    note "$label failed (attempt $attempt of $RETRIES): $(grep -v '^[[:space:]]*$' "$ERR_FILE" | tail -n 1)" >&2
    note "retrying in ${RETRY_SECONDS}s" >&2
    sleep "$RETRY_SECONDS"
    attempt=$((attempt + 1))
  done
}

last_error() { tail -n 5 "$ERR_FILE" | sed 's/^/    /' >&2; }

# ----------------------------------------------------------------------------- the steps
output() {  # output NAME: one output of the subscription deployment (exit 3 when missing)
  json_get "$OUTPUTS" "$1" \
    || die 3 "deployment $DEPLOYMENT_NAME has no output $1 (deployed from an older infra/main.json?)"
}

read_outputs() {  # the deployment outputs the steps after (1) use
  RG=$(output resourceGroup)
  APP=$(output functionAppName)
  URL=$(output functionAppUrl)
  IDENTITY_ID=$(output identityResourceId)
  PRINCIPAL=$(output identityPrincipalId)
  CLIENT=$(output identityClientId)
  STORAGE_ID=$(output storageAccountId)
  TOPIC=$(output systemTopicName)
  DEADLETTER=$(output deadLetterContainer)
  EVENT_DELIVERY=$(output eventDelivery)
}

prerequisites() {  # (0) the package and the app registration that defines Hairpin.Approver
  step "0/4 subscription, package, app registration"
  local tenant prefix app_name sp
  tenant=$(az account show --query tenantId -o tsv 2>"$ERR_FILE") \
    || { last_error; die 2 "cannot read the tenant of subscription $SUBSCRIPTION"; }
  note "subscription $SUBSCRIPTION, tenant $tenant, region $LOCATION"
  local ns state
  for ns in $PROVIDERS; do
    state=$(az provider show --namespace "$ns" --query registrationState -o tsv 2>"$ERR_FILE") \
      || { last_error; die 2 "cannot read the registration of resource provider $ns"; }
    if [ "$state" != "Registered" ]; then
      note "registering resource provider $ns ($state)"
      az provider register --namespace "$ns" --wait 2>"$ERR_FILE" \
        || { last_error; die 2 "cannot register resource provider $ns (needs */register/action)"; }
    fi
  done
  if [ -z "$PACKAGE" ]; then
    note "building the package (scripts/package.py)"
    PACKAGE=$(cd "$ROOT" && python3 scripts/package.py --out dist \
      | sed -n 's/^\(dist\/[^:]*\.zip\):.*/\1/p')
    [ -n "$PACKAGE" ] || die 2 "the package build failed (make package shows why)"
    PACKAGE="$ROOT/$PACKAGE"
  fi
  [ -f "$PACKAGE" ] || die 2 "package not found: $PACKAGE"
  note "package $PACKAGE"
  if [ "$NO_AUTH" = 1 ] || [ -n "$AUTH_CLIENT_ID" ]; then
    return 0
  fi
  prefix=${NAME_PREFIX:-$(python3 -c 'import json, sys
print(json.load(open(sys.argv[1]))["parameters"].get("namePrefix", {}).get("value", "hairpin"))' "$PARAMETERS")}
  app_name="$prefix-hairpin-approvals"
  AUTH_CLIENT_ID=$(az ad app list --display-name "$app_name" --query "[0].appId" -o tsv 2>"$ERR_FILE") \
    || { last_error; die 2 "cannot read app registrations (Microsoft Graph); pass --auth-client-id or --no-auth"; }
  if [ -z "$AUTH_CLIENT_ID" ]; then
    AUTH_CLIENT_ID=$(az ad app create --display-name "$app_name" --sign-in-audience AzureADMyOrg \
      --app-roles "@$ROOT/infra/approver-app-roles.json" --query appId -o tsv 2>"$ERR_FILE") \
      || { last_error; die 2 "cannot create the app registration $app_name; pass --auth-client-id or --no-auth"; }
    note "created app registration $app_name ($AUTH_CLIENT_ID) with app role Hairpin.Approver"
  else
    note "app registration $app_name ($AUTH_CLIENT_ID)"
  fi
  az ad app update --id "$AUTH_CLIENT_ID" --identifier-uris "api://$AUTH_CLIENT_ID" 2>"$ERR_FILE" \
    || { last_error; die 2 "cannot set api://$AUTH_CLIENT_ID on the app registration"; }
  sp=$(az ad sp list --filter "appId eq '$AUTH_CLIENT_ID'" --query "[0].id" -o tsv 2>"$ERR_FILE") \
    || { last_error; die 2 "cannot read the service principal of $AUTH_CLIENT_ID"; }
  if [ -z "$sp" ]; then
    az ad sp create --id "$AUTH_CLIENT_ID" -o none 2>"$ERR_FILE" \
      || { last_error; die 2 "cannot create the service principal of $AUTH_CLIENT_ID"; }
  fi
}

infrastructure() {  # (1) infra/main.json at subscription scope
  step "1/4 infrastructure: az deployment sub create (infra/main.json)"
  local t=$SECONDS extra=()
  if [ -n "$NAME_PREFIX" ]; then
    extra+=("namePrefix=$NAME_PREFIX")
  fi
  extra+=("authClientId=$AUTH_CLIENT_ID")
  OUTPUTS=$(az deployment sub create --name "$DEPLOYMENT_NAME" --location "$LOCATION" \
    --template-file "$ROOT/infra/main.json" --parameters "@$PARAMETERS" \
    --parameters "${extra[@]}" --query properties.outputs -o json 2>"$ERR_FILE") \
    || { last_error; die 3 "the infrastructure deployment failed; details: az deployment sub show -n $DEPLOYMENT_NAME (and its operations in the portal)"; }
  read_outputs
  note "resource group $RG, function app $APP ($((SECONDS - t))s)"
}

previous_outputs() {  # --events-only: the outputs of the deployment step (1) made
  step "outputs of deployment $DEPLOYMENT_NAME"
  OUTPUTS=$(az deployment sub show --name "$DEPLOYMENT_NAME" --query properties.outputs -o json 2>"$ERR_FILE") \
    || { last_error; die 3 "no subscription deployment $DEPLOYMENT_NAME to read outputs from (run the full deploy first)"; }
  read_outputs
  note "resource group $RG, function app $APP"
}

publish() {  # (2) the package, then wait until the host lists every function
  step "2/4 publish: az functionapp deployment source config-zip"
  local t=$SECONDS listed="" count=0 i
  retry "publish" "$PUBLISH_TRANSIENT" az functionapp deployment source config-zip \
    --resource-group "$RG" --name "$APP" --src "$PACKAGE" --build-remote false -o none >/dev/null \
    || { last_error; die 4 "publishing $PACKAGE to $APP failed (with networkIsolation=full, run this from inside the VNet)"; }
  for ((i = 1; i <= WAIT_TRIES; i++)); do
    listed=$(az functionapp function list --resource-group "$RG" --name "$APP" \
      --query "[].name" -o tsv 2>"$ERR_FILE" || true)
    count=$(grep -c . <<<"$listed" || true)
    if [ "$count" -ge "$EXPECTED_FUNCTIONS" ] && grep -q "$EVENT_FUNCTION\$" <<<"$listed"; then
      note "all $count functions listed ($((SECONDS - t))s)"
      return 0
    fi
    note "functions listed: $count of $EXPECTED_FUNCTIONS (poll $i of $WAIT_TRIES)"
    if [ "$i" -lt "$WAIT_TRIES" ]; then
      sleep "$RETRY_SECONDS"
    fi
  done
  die 5 "the host lists $count of $EXPECTED_FUNCTIONS functions after publishing; see Application Insights (traces, exceptions) and az functionapp log deployment show -g $RG -n $APP"
}

events() {  # (3) the Event Grid subscription, now that the function exists
  step "3/4 Event Grid subscription: az deployment group create (infra/eventgrid.json)"
  local t=$SECONDS
  if [ "$SKIP_EVENTS" = 1 ]; then
    EVENTS="skipped (--skip-events): run scripts/deploy.sh --events-only later"
    note "skipped (--skip-events)"
    return 0
  fi
  if [ "$EVENT_DELIVERY" != "true" ]; then
    EVENTS="not possible with networkIsolation=full; the drift sweep finds changes"
    note "skipped: with networkIsolation=full the site has no public endpoint, and Event Grid"
    note "cannot deliver to a private endpoint; the drift sweep (HAIRPIN_SWEEP_SCHEDULE) finds changes"
    return 0
  fi
  retry "event subscription" "$EVENTS_TRANSIENT" az deployment group create --resource-group "$RG" \
    --name "$DEPLOYMENT_NAME-events" --template-file "$ROOT/infra/eventgrid.json" \
    --parameters "functionAppName=$APP" "identityResourceId=$IDENTITY_ID" \
    "deadLetterStorageAccountId=$STORAGE_ID" "systemTopicName=$TOPIC" \
    "deadLetterContainer=$DEADLETTER" "eventFunctionName=$EVENT_FUNCTION" \
    --query properties.provisioningState -o tsv >/dev/null \
    || { last_error; die 6 "the Event Grid subscription failed. The app is deployed and its drift sweep runs; once the cause is fixed, run: scripts/deploy.sh --events-only --subscription $SUBSCRIPTION --deployment-name $DEPLOYMENT_NAME (docs/deploy.md, 'When step 3 fails')"; }
  EVENTS="subscribed ($TOPIC -> $EVENT_FUNCTION)"
  note "subscribed $EVENT_FUNCTION to the subscription's resource events ($((SECONDS - t))s)"
}

summary() {  # (4) what was deployed and how to check it
  step "4/4 done in ${SECONDS}s"
  local approvals="$AUTH_CLIENT_ID, app role Hairpin.Approver"
  [ -n "$AUTH_CLIENT_ID" ] \
    || approvals="none (--no-auth): no approval can be verified (labs: allowKeyOnlyApprovals=true)"
  cat <<EOF
    function app   $APP (resource group $RG)
    health         $URL/api/health
    audit          $URL/api/audit
    fix            $URL/api/fix   (status: $URL/api/fix/{operation})
    identity       principal $PRINCIPAL, client $CLIENT
                   $IDENTITY_ID
    approvals      $approvals
    events         $EVENTS

Check it:
    KEY=\$(az functionapp function keys list -g $RG -n $APP --function-name health_check --query default -o tsv)
    curl -s "$URL/api/health?code=\$KEY"
    hairpin audit --subscription $SUBSCRIPTION    # the same read-only audit, with your az login
EOF
}

# ----------------------------------------------------------------------------- main
SECONDS=0
EVENTS=""
az account set --subscription "$SUBSCRIPTION" 2>"$ERR_FILE" \
  || { last_error; die 2 "cannot use subscription $SUBSCRIPTION (az login first?)"; }
if [ "$EVENTS_ONLY" = 1 ]; then
  AUTH_CLIENT_ID="(unchanged)"
  previous_outputs
else
  prerequisites
  infrastructure
  publish
fi
events
summary
