$ErrorActionPreference = 'Stop'
$Problems = @()
$Major = $PSVersionTable.PSVersion.Major
$Minor = $PSVersionTable.PSVersion.Minor
if ($Major -lt 5 -or ($Major -eq 5 -and $Minor -lt 1)) {
    $Problems += "PowerShell $Major.$Minor is older than 5.1"
}
$Adapters = @()
try {
    $Adapters = @(Get-NetAdapter -ErrorAction Stop)
} catch {
    $Problems += 'Get-NetAdapter is not available (NetAdapter module)'
}
$MacFound = $null
if ($PrimaryMac) {
    $MacFound = @($Adapters | Where-Object { $_.MacAddress -eq $PrimaryMac }).Count -gt 0
    if (-not $MacFound) { $Problems += "no adapter has the MAC of the primary NIC ($PrimaryMac)" }
}
$Out = [ordered]@{
    probe = [ordered]@{ powershell = "$Major.$Minor"; adapters = $Adapters.Count;
                        primary_mac_found = $MacFound }
    problems = @($Problems)
    ok = ($Problems.Count -eq 0)
}
$Out | ConvertTo-Json -Compress -Depth 4
