-- Give back a job's group slots and resources (vq/admission.py release_in, beside its user's and type's).
-- KEYS: the names in K, then 1 the job's RQ hash. ARGV: 1 the job id.
groups_lease(redis.call('HGET', KEYS[K_N + 1], C.groups_field), ARGV[1], nil)
resources_lease(redis.call('HGET', KEYS[K_N + 1], C.held_field), ARGV[1], nil)
return 1
