$ErrorActionPreference = 'Stop'
$changes = New-Object System.Collections.Generic.List[string]
# Any unexpected terminating error still ends with one JSON line and a non-zero exit.
trap { Fail 'unexpected' 10 ("" + $_.Exception.Message) }
function Write-Result([string]$result, [hashtable]$extra) {
  $o = [ordered]@{ result = $result; os = 'windows'; format = $Format; changes = [string[]]$changes.ToArray() }
  if ($extra) { foreach ($k in $extra.Keys) { $o[$k] = $extra[$k] } }
  Write-Output ([pscustomobject]$o | ConvertTo-Json -Compress -Depth 4)
}
function Fail([string]$code, [int]$status, [string]$message) {
  [Console]::Error.WriteLine("hairpin: error: $message")
  Write-Result 'error' @{ error = $code; message = $message }
  exit $status
}
# The accelerated-networking VF (Mellanox, MANA) shares the synthetic adapter's MAC; never
# route on it. Prefer the Hyper-V synthetic adapter if more than one candidate remains.
function Find-SecondaryAdapter {
  $all = @(Get-NetAdapter | Where-Object { $_.MacAddress -eq $Mac -and
    $_.InterfaceDescription -notmatch 'Mellanox|Virtual Function|Microsoft Azure Network Adapter|MANA' })
  if ($all.Count -gt 1) { $all = @($all | Where-Object { $_.InterfaceDescription -like '*Hyper-V Network Adapter*' }) }
  if ($all.Count -ne 1) { return $null }
  return $all[0]
}
