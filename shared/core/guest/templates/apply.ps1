$adapter = Find-SecondaryAdapter
if (-not $adapter) { Fail 'nic_not_found' 3 "no single (non-VF) adapter with MAC $Mac" }
$idx = $adapter.ifIndex
if (-not (Get-NetIPAddress -InterfaceIndex $idx -AddressFamily IPv4 -IPAddress $SecondaryIp -ErrorAction SilentlyContinue)) {
  Fail 'address_missing' 5 "adapter $idx does not hold $SecondaryIp yet (DHCP)"
}
if ($adapter.Status -ne 'Up') { Fail 'gateway_unreachable' 6 "gateway $Gateway unreachable: adapter $idx is $($adapter.Status)" }
try { $null = & ping.exe -n 1 -w 2000 -S $SecondaryIp $Gateway } catch { }  # fills the ARP cache
$nb = Get-NetNeighbor -InterfaceIndex $idx -IPAddress $Gateway -ErrorAction SilentlyContinue
if (-not $nb -or $nb.State -in @('Unreachable', 'Incomplete')) {
  Fail 'gateway_unreachable' 6 "gateway $Gateway unreachable via adapter $idx"
}
foreach ($vip in $Vips) {
  $prefix = "$vip/32"
  $sel = @{ DestinationPrefix = $prefix; InterfaceIndex = $idx; NextHop = $Gateway; ErrorAction = 'SilentlyContinue' }
  $active = Get-NetRoute @sel -PolicyStore ActiveStore
  $persistent = Get-NetRoute @sel -PolicyStore PersistentStore
  if (-not $active -and -not $persistent) {
    # No store given: New-NetRoute writes the active and the persistent store.
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1
    $changes.Add("+route $prefix")
  } elseif (-not $persistent) {
    # New-NetRoute cannot write the PersistentStore alone (its reference): both, afresh.
    $active | Remove-NetRoute -Confirm:$false
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1
    $changes.Add("+route $prefix persistent")
  } elseif (-not $active) {
    $null = New-NetRoute -DestinationPrefix $prefix -InterfaceIndex $idx -NextHop $Gateway -RouteMetric 1 -PolicyStore ActiveStore
    $changes.Add("+route $prefix active")
  }
}
# The managed adapter carries only our host routes: a /32 via the gateway to a VIP that is no
# longer wanted (its frontend was removed) goes, from both stores.
$wanted = @($Vips | ForEach-Object { "$_/32" })
foreach ($store in 'ActiveStore', 'PersistentStore') {
  Get-NetRoute -InterfaceIndex $idx -NextHop $Gateway -PolicyStore $store -ErrorAction SilentlyContinue |
    Where-Object { $_.DestinationPrefix -like '*/32' -and $wanted -notcontains $_.DestinationPrefix } |
    ForEach-Object {
      Remove-NetRoute -InputObject $_ -Confirm:$false
      $changes.Add("-route $($_.DestinationPrefix) $store")
    }
}
$result = if ($changes.Count) { 'applied' } else { 'unchanged' }
Write-Result $result @{ interface_index = $idx }
