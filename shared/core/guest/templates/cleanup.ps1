foreach ($vip in $Vips) {
  foreach ($store in 'ActiveStore', 'PersistentStore') {
    $have = @(Get-NetRoute -DestinationPrefix "$vip/32" -NextHop $Gateway -PolicyStore $store -ErrorAction SilentlyContinue)
    if ($have.Count) {
      $have | Remove-NetRoute -Confirm:$false
      $changes.Add("-route $vip/32 $store")
    }
  }
}
$result = if ($changes.Count) { 'cleaned' } else { 'unchanged' }
Write-Result $result $null
