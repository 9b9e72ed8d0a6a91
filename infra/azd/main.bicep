// `azd up` entry point (azure.yaml: infra.path infra/azd). azd's provisioning provider reads
// Bicep, so this wraps the one template the project has, infra/main.json (ARM JSON can be used
// as a Bicep module), and maps its outputs to the names azd and the postdeploy hook read.
// azd then publishes the code (service 'hairpin', found by its azd-service-name tag) and the
// postdeploy hook (scripts/azd-postdeploy.sh) creates the Event Grid subscription: never in
// this deployment, because Event Grid validates the function endpoint, which needs the code.
targetScope = 'subscription'

@minLength(1)
@maxLength(40)
@description('Name of the azd environment; the resource group is rg-<name>.')
param environmentName string

@minLength(1)
@description('Region for every resource: one that offers Flex Consumption.')
param location string

@description('Client ID of the app registration that defines the Hairpin.Approver app role; empty = no App Service Authentication, so no approval can be verified (scripts/deploy.sh creates one).')
param authClientId string = ''

@allowed(['none', 'storage', 'full'])
@description('networkIsolation of infra/main.json.')
param networkIsolation string = 'storage'

module hairpin '../main.json' = {
  name: 'hairpin'
  params: {
    location: location
    resourceGroupName: 'rg-${environmentName}'
    environment: environmentName
    authClientId: authClientId
    networkIsolation: networkIsolation
  }
}

output AZURE_LOCATION string = location
output AZURE_RESOURCE_GROUP string = hairpin.outputs.resourceGroup.value
output AZURE_FUNCTION_APP_NAME string = hairpin.outputs.functionAppName.value
output SERVICE_HAIRPIN_ENDPOINT_URL string = hairpin.outputs.functionAppUrl.value
output HAIRPIN_DEPLOYMENT_NAME string = 'hairpin'
