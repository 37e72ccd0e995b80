-- Resources (vq/capacity.py): what a running job holds of its worker process's share (GPU
-- devices, amounts), in its hash's C.held_field as JSON {holder, gpu = {indices}, <name> =
-- amount}, leased under the holder in K.running_resources .. <holder> (id -> lease deadline
-- ms), renewed and given back with the job's other leases. Part of admit.lua, renew.lua and
-- release_groups.lua.

-- Lease (mode nil), renew (mode 'XX') or, without a deadline, give back what the job holds
-- (`raw`: its C.held_field, or nil/false for a job holding nothing).
local function resources_lease(raw, id, deadline, mode)
  if not raw then return end
  local ok, held = pcall(cjson.decode, raw)
  if not ok or type(held) ~= 'table' or type(held.holder) ~= 'string' then return end
  lease_in(K.running_resources .. held.holder, id, deadline, mode)
end
