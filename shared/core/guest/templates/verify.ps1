$ErrorActionPreference = 'Stop'
$results = @()
$allOk = $true
foreach ($t in $Targets) {
  $clients = @(1 .. $Count | ForEach-Object { New-Object System.Net.Sockets.TcpClient })
  $tasks = @($clients | ForEach-Object { $_.ConnectAsync($t[0], [int]$t[1]) })
  try { $null = [System.Threading.Tasks.Task]::WaitAll([System.Threading.Tasks.Task[]]$tasks, $TimeoutMs) } catch { }
  $ok = 0; $backends = [ordered]@{}
  for ($i = 0; $i -lt $Count; $i++) {
    if ($tasks[$i].Status -ne 'RanToCompletion') { continue }
    $ok++
    try {
      $s = $clients[$i].GetStream(); $s.ReadTimeout = 1000
      $line = (New-Object System.IO.StreamReader($s)).ReadLine()
      $name = (($line -split ' ')[0] -replace '[^A-Za-z0-9._-]', '')
      if ($name.Length -gt 32) { $name = $name.Substring(0, 32) }
      if ($name) {
        if (-not $backends.Contains($name) -and $backends.Count -ge 4) { $name = 'other' }
        $backends[$name] = 1 + [int]$backends[$name]
      }
    } catch { }
  }
  $clients | ForEach-Object { $_.Dispose() }
  if ($ok -lt $Count) { $allOk = $false }
  $results += [pscustomobject]@{ vip = $t[0]; port = [int]$t[1]; ok = $ok; total = $Count; backends = [pscustomobject]$backends }
}
Write-Output ([pscustomobject]@{ verify = @($results); ok = $allOk } | ConvertTo-Json -Compress -Depth 4)
if (-not $allOk) { exit 1 }
